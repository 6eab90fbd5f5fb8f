"""``MaskFormerHead``: the pixel decoder followed by the transformer decoder (``predictor``)."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ...constants import IGNORE_LABEL
from ...layers import ShapeSpec
from ..registry import PIXEL_DECODER_REGISTRY, SEM_SEG_HEAD_REGISTRY, TRANSFORMER_DECODER_REGISTRY


@SEM_SEG_HEAD_REGISTRY.register()
class MaskFormerHead(nn.Module):
    """Holds ``pixel_decoder`` and ``predictor`` (upstream's names).

    Args:
        num_classes: K. ignore_value: label of unlabelled pixels. loss_weight: kept for config parity.
        pixel_decoder: returns (mask_features, transformer_encoder_features, multi_scale_features).
        predictor: the transformer decoder.
        transformer_in_feature: what the predictor reads: "multi_scale_pixel_decoder",
            "transformer_encoder", "pixel_embedding" or a backbone feature name.
    """

    def __init__(self, *, num_classes: int, pixel_decoder: nn.Module, predictor: nn.Module,
                 transformer_in_feature: str, ignore_value: int = IGNORE_LABEL, loss_weight: float = 1.0,
                 common_stride: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.common_stride = common_stride
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.transformer_in_feature = transformer_in_feature

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> MaskFormerHead:
        head = cfg.MODEL.SEM_SEG_HEAD
        input_shape = {k: v for k, v in input_shape.items() if k in head.IN_FEATURES}
        missing = [f for f in head.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES {missing} are not produced by the backbone "
                f"(it gives {sorted(input_shape)}); check MODEL.RESNETS.OUT_FEATURES."
            )
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        if in_feature in ("transformer_encoder", "multi_scale_pixel_decoder"):
            in_channels = head.CONVS_DIM
        elif in_feature == "pixel_embedding":
            in_channels = head.MASK_DIM
        else:
            in_channels = input_shape[in_feature].channels
        pixel_decoder = PIXEL_DECODER_REGISTRY.get(head.PIXEL_DECODER_NAME).from_config(cfg, input_shape)
        predictor = TRANSFORMER_DECODER_REGISTRY.get(cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME).from_config(
            cfg, in_channels, mask_classification=True
        )
        return cls(
            num_classes=head.NUM_CLASSES,
            pixel_decoder=pixel_decoder,
            predictor=predictor,
            transformer_in_feature=in_feature,
            ignore_value=head.IGNORE_VALUE,
            loss_weight=head.LOSS_WEIGHT,
            common_stride=head.COMMON_STRIDE,
        )

    def pixel_features(self, features: Dict[str, torch.Tensor]) -> Tuple[object, torch.Tensor]:
        """The pixel decoder's part: (what the predictor reads, ``mask_features`` [N, MASK_DIM, H/4, W/4]).

        The predictor's input is a list of 3 maps [N, C, h_l, w_l] for "multi_scale_pixel_decoder", else one
        map. Every output row depends on its own image only, so a video can be run through this in chunks of
        frames and the results concatenated.
        """
        mask_features, encoder_features, multi_scale_features = self.pixel_decoder.forward_features(features)
        if self.transformer_in_feature == "multi_scale_pixel_decoder":
            return multi_scale_features, mask_features
        if self.transformer_in_feature == "transformer_encoder":
            if encoder_features is None:
                raise ValueError(
                    f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE='transformer_encoder' needs a pixel decoder with a "
                    f"transformer encoder, but {type(self.pixel_decoder).__name__} has none; use "
                    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME 'TransformerEncoderPixelDecoder'."
                )
            return encoder_features, mask_features
        if self.transformer_in_feature == "pixel_embedding":
            return mask_features, mask_features
        return features[self.transformer_in_feature], mask_features

    def forward(self, features: Dict[str, torch.Tensor], mask: Optional[torch.Tensor] = None,
                **predictor_kwargs) -> Dict:
        """Pixel decoder then predictor; ``predictor_kwargs`` go to the predictor (e.g. ``num_frames``)."""
        predictor_input, mask_features = self.pixel_features(features)
        return self.predictor(predictor_input, mask_features, mask, **predictor_kwargs)
