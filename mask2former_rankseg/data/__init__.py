"""Data: dataset catalogs, builtin datasets (registered on import), transforms, mappers, loaders."""

from . import datasets  # noqa: F401  (registers the builtin datasets)
from .build import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
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
]
