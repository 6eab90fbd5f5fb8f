"""Batch containers with detectron2's interfaces: ``ImageList`` and ``Instances``."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch.nn import functional as F


class ImageList:
    """Images of different sizes padded into one tensor.

    Attributes:
        tensor: [B, C, Hmax, Wmax], padded at the bottom/right.
        image_sizes: the (h, w) of each image before padding.
    """

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """The ``idx``-th image without its padding: [C, h, w]."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, device: torch.device | str) -> ImageList:
        return ImageList(self.tensor.to(device), self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @staticmethod
    def from_tensors(tensors: Sequence[torch.Tensor], size_divisibility: int = 0,
                     pad_value: float = 0.0) -> ImageList:
        """Pad ``tensors`` ([..., H, W] each, same leading dims) to a common size.

        The padded size is the largest H and W rounded up to a multiple of ``size_divisibility``
        (when > 1).
        """
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one tensor.")
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            max_h = int(math.ceil(max_h / size_divisibility) * size_divisibility)
            max_w = int(math.ceil(max_w / size_divisibility) * size_divisibility)
        batched = tensors[0].new_full((len(tensors), *tensors[0].shape[:-2], max_h, max_w), pad_value)
        for i, t in enumerate(tensors):
            batched[i, ..., : t.shape[-2], : t.shape[-1]].copy_(t)
        return ImageList(batched.contiguous(), image_sizes)


class Instances:
    """Per-image annotations or predictions: named fields of equal length N.

    Typical fields: ``gt_classes`` [N] int64, ``gt_masks`` [N, H, W] bool/uint8;
    predictions: ``pred_masks`` [N, H, W], ``scores`` [N], ``pred_classes`` [N].
    """

    def __init__(self, image_size: Tuple[int, int], **fields: Any):
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: Dict[str, Any] = {}
        for name, value in fields.items():
            self.set(name, value)

    @property
    def image_size(self) -> Tuple[int, int]:
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; during unpickling ``_fields`` itself is not set yet.
        fields = self.__dict__.get("_fields")
        if fields is None or name not in fields:
            raise AttributeError(f"Instances has no field {name!r}; fields: {list(fields or {})}")
        return fields[name]

    def set(self, name: str, value: Any) -> None:
        if self._fields and len(value) != len(self):
            raise ValueError(f"Field {name!r} has length {len(value)}, the others {len(self)}.")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        return dict(self._fields)

    def to(self, device: torch.device | str) -> Instances:
        out = Instances(self._image_size)
        for name, value in self._fields.items():
            out.set(name, value.to(device) if hasattr(value, "to") else value)
        return out

    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        return 0

    def __getitem__(self, item: Any) -> Instances:
        out = Instances(self._image_size)
        for name, value in self._fields.items():
            out.set(name, value[item])
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {tuple(getattr(v, 'shape', (len(v),)))}" for k, v in self._fields.items())
        return f"Instances(num_instances={len(self)}, image_size={self._image_size}, fields=[{fields}])"


def sem_seg_postprocess(result: torch.Tensor, img_size: Tuple[int, int], output_height: int,
                        output_width: int) -> torch.Tensor:
    """Crop the padding off a [C, Hpad, Wpad] prediction and resize it to the original size.

    Args:
        result: [C, Hpad, Wpad] scores on the padded network input.
        img_size: (h, w) of the network input before padding.
        output_height, output_width: size to resize to (the image's original size).
    Returns:
        [C, output_height, output_width]
    """
    result = result[:, : img_size[0], : img_size[1]].expand(1, -1, -1, -1)
    result = F.interpolate(result, size=(output_height, output_width), mode="bilinear", align_corners=False)
    return result[0]
