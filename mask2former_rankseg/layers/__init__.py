"""Small building blocks with detectron2's names: ``ShapeSpec``, ``Conv2d``, norms."""

from .batch_norm import FrozenBatchNorm2d, SyncBatchNorm2d, get_norm
from .drop_path import DropPath, drop_path
from .shape_spec import ShapeSpec
from .wrappers import Conv2d, c2_msra_fill, c2_xavier_fill

__all__ = ["ShapeSpec", "Conv2d", "DropPath", "FrozenBatchNorm2d", "SyncBatchNorm2d", "drop_path", "get_norm",
           "c2_msra_fill", "c2_xavier_fill"]
