"""Dataset mappers: dataset dict -> model input dict."""

from .inference import InferenceDatasetMapper
from .semantic import MaskFormerSemanticDatasetMapper, semantic_to_instances

__all__ = ["InferenceDatasetMapper", "MaskFormerSemanticDatasetMapper", "semantic_to_instances"]
