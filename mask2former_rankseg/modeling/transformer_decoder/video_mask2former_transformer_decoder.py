"""Video Mask2Former's ``VideoMultiScaleMaskedTransformerDecoder``: one set of queries per clip, masked
attention over every frame of the clip, masks [B, Q, T, H, W]."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from ..registry import TRANSFORMER_DECODER_REGISTRY
from .mask2former_transformer_decoder import MultiScaleMaskedTransformerDecoder
from .position_encoding import PositionEmbeddingSine3D


@TRANSFORMER_DECODER_REGISTRY.register()
class VideoMultiScaleMaskedTransformerDecoder(MultiScaleMaskedTransformerDecoder):
    """The image decoder's layers, parameters and names, applied to clips.

    The features of the T frames of a clip are one memory of T*h*w tokens per level (frame-major) with a 3-D
    sine position encoding (:class:`PositionEmbeddingSine3D`); the queries are shared by all frames, each
    query predicts one mask per frame from its single embedding, and masked attention uses the mask of every
    frame. Parameter names and counts equal the image decoder's (and upstream's).

    Args:
        num_frames: T of a training clip (``INPUT.SAMPLING_FRAME_NUM``), used when ``forward`` is not told the
            clip length; the other arguments are the image decoder's.
    """

    def __init__(self, in_channels: int, mask_classification: bool = True, *, num_frames: int, **kwargs):
        super().__init__(in_channels, mask_classification, **kwargs)
        if num_frames < 1:
            raise ValueError(f"INPUT.SAMPLING_FRAME_NUM={num_frames} must be >= 1.")
        self.num_frames = num_frames
        self.pe_layer = PositionEmbeddingSine3D(self.pe_layer.num_pos_feats, normalize=True)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool = True
                    ) -> VideoMultiScaleMaskedTransformerDecoder:
        return cls(in_channels, mask_classification, num_frames=cfg.INPUT.SAMPLING_FRAME_NUM,
                   **cls._config_kwargs(cfg))

    def forward(self, x: List[torch.Tensor], mask_features: torch.Tensor, mask: Optional[torch.Tensor] = None,
                num_frames: Optional[int] = None) -> Dict[str, object]:
        """
        Args:
            x: 3 feature maps [B*T, C, h_l, w_l], coarsest first; the T frames of each clip are consecutive.
            mask_features: [B*T, mask_dim, H, W].
            mask: unused (as upstream).
            num_frames: T. Default: ``self.num_frames`` in training and all frames as one clip (B = 1) in eval,
                as upstream.
        Returns:
            pred_logits [B, Q, K+1], pred_masks [B, Q, T, H, W], aux_outputs (in eval: ``pred_logits`` only, so
            the 10 layers' masks of a long video are not all kept), query_feature ([Q, B, C] per layer).
        """
        self._check_levels(x)
        frames = mask_features.shape[0]
        if num_frames is None:
            num_frames = self.num_frames if self.training else frames
        if num_frames < 1 or frames % num_frames:
            raise ValueError(f"{type(self).__name__}: {frames} frames do not form clips of {num_frames} frames.")
        batch = frames // num_frames
        mask_features = mask_features.view(batch, num_frames, *mask_features.shape[1:])
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            h, w = x[i].shape[-2:]
            sizes.append((h, w))
            level_pos = self.pe_layer(x[i].view(batch, num_frames, -1, h, w)).flatten(3)  # [B, T, C, hw]
            level_src = self._project(x[i], i)  # [B*T, C, hw]
            level_src = level_src.view(batch, num_frames, *level_src.shape[1:])
            # [B, T, C, hw] -> [T*hw, B, C]
            pos.append(level_pos.permute(1, 3, 0, 2).flatten(0, 1))
            src.append(level_src.permute(1, 3, 0, 2).flatten(0, 1))
        return self._decode(src, pos, sizes, mask_features, keep_aux_masks=self.training)

    @staticmethod
    def _mask_logits(mask_embed: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        """mask_embed [B, Q, D] . mask_features [B, T, D, H, W] -> [B, Q, T, H, W]."""
        return torch.einsum("bqc,btchw->bqthw", mask_embed, mask_features)
