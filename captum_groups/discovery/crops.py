"""NeurFlow's multi-scale crops: squares of side 1, 1/2 and 1/4 of the image, stride half a side."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation.errors import ParameterError

NEURFLOW_SCALES = (1.0, 0.5, 0.25)
"""Crop sides as fractions of the image side, as in NeurFlow (1 + 9 + 49 = 59 crops)."""


def crop_boxes(height: int, width: int, scales: Sequence[float] = NEURFLOW_SCALES) -> Tensor:
    """Crop boxes (top, left, height, width), one row per crop, largest scale first.

    Examples
    --------
    >>> crop_boxes(8, 8).shape
    torch.Size([59, 4])
    >>> crop_boxes(8, 8)[:2].tolist()
    [[0, 0, 8, 8], [0, 0, 4, 4]]
    """
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"scales must be fractions in (0, 1], got {tuple(scales)}")
    boxes = []
    for scale in scales:
        crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
        step_h, step_w = max(1, crop_h // 2), max(1, crop_w // 2)
        for top in range(0, height - crop_h + 1, step_h):
            for left in range(0, width - crop_w + 1, step_w):
                boxes.append((top, left, crop_h, crop_w))
    return torch.tensor(boxes, dtype=torch.long)


def crop_and_resize(images: Tensor, boxes: Tensor) -> Tensor:
    """Every box of every image, resized back to the image size: (B * M, C, H, W).

    Crops of one image are consecutive: row ``b * M + m`` is box ``m`` of image ``b``.

    Examples
    --------
    >>> crop_and_resize(torch.ones(2, 1, 8, 8), crop_boxes(8, 8)).shape
    torch.Size([118, 1, 8, 8])
    """
    if images.ndim != 4:
        raise ValueError(f"crops need images shaped (N, C, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    crops = []
    for top, left, crop_h, crop_w in boxes.tolist():
        if (
            min(top, left) < 0
            or min(crop_h, crop_w) < 1
            or top + crop_h > height
            or (left + crop_w > width)
        ):
            raise ParameterError(
                "boxes",
                f"the crop box (top {top}, left {left}, height {crop_h}, width {crop_w}) lies "
                f"outside the {height}x{width} images; a box must fit in the images it crops "
                f"(were the exemplars found on images of another size?)",
            )
        patch = images[:, :, top : top + crop_h, left : left + crop_w]
        if (crop_h, crop_w) != (height, width):
            patch = F.interpolate(patch, size=(height, width), mode="bilinear", align_corners=False)
        crops.append(patch)
    return torch.stack(crops, 1).flatten(0, 1)
