"""Small building blocks with detectron2's names: ``ShapeSpec``, ``Conv2d``, norms."""

from .batch_norm import FrozenBatchNorm2d, get_norm
from .shape_spec import ShapeSpec
from .wrappers import Conv2d, c2_msra_fill, c2_xavier_fill

__all__ = ["ShapeSpec", "Conv2d", "FrozenBatchNorm2d", "get_norm", "c2_msra_fill", "c2_xavier_fill"]
