"""Data: dataset catalogs, builtin datasets (registered on the catalogs' first use), transforms, mappers, loaders,
and the embedded synthetic datasets."""

from .build import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from .catalog import DatasetCatalog, Metadata, MetadataCatalog, register_builtins_on_first_use
from .datasets import register_all_builtin
from .detection_utils import ImageReadError, SizeMismatchError, check_image_size, read_image
from .mappers import InferenceDatasetMapper, MaskFormerPanopticDatasetMapper, MaskFormerSemanticDatasetMapper

__all__ = [
    "DatasetCatalog",
    "Metadata",
    "MetadataCatalog",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "get_detection_dataset_dicts",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "InferenceDatasetMapper",
    "read_image",
    "check_image_size",
    "ImageReadError",
    "SizeMismatchError",
    "register_all_builtin",
]

register_builtins_on_first_use(register_all_builtin)
