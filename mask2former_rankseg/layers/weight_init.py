"""detectron2's Caffe2-style weight fills (``c2_xavier_fill``, ``c2_msra_fill``), here so that importing the package
does not import ``fvcore.nn``, which compiles a TorchScript function at import time and prints torch's
``torch.jit.script`` deprecation warning on every run."""

from torch import nn

__all__ = ["c2_msra_fill", "c2_xavier_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "XavierFill" of ``module.weight``: uniform in +-sqrt(3 / fan_in) (``kaiming_uniform_`` with a=1);
    the bias, if any, 0."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2's "MSRAFill" of ``module.weight``: normal with std sqrt(2 / fan_out) (``kaiming_normal_``,
    fan_out, ReLU gain); the bias, if any, 0."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)
