"""Labels from concept masks: NetDissect-style IoU between a group's activation map and masks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import GroupEvidence, GroupLabel, Labeler

__all__ = ["MaskLabeler"]


def _as_masks(
    masks: Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray], names: Sequence[str] | None
) -> tuple[Tensor, list[str]]:
    if isinstance(masks, Mapping):
        if names is not None:
            raise ValueError("names come from the mapping's keys; do not pass names with a mapping")
        names = [str(name) for name in masks]
        layers = [torch.as_tensor(np.asarray(m)) for m in masks.values()]
        if not layers or any(m.shape != layers[0].shape or m.ndim != 3 for m in layers):
            raise ValueError("masks must map each concept name to an (N, H, W) array of one shape")
        stacked = torch.stack(layers, 1)
    else:
        stacked = torch.as_tensor(np.asarray(masks))
        if stacked.ndim != 4:
            raise ValueError(
                f"masks must be shaped (N, concepts, H, W), got {tuple(stacked.shape)}"
            )
        names = [str(i) for i in range(stacked.shape[1])] if names is None else list(names)
        if len(names) != stacked.shape[1]:
            raise ValueError(f"names must give one name per concept ({stacked.shape[1]})")
    return stacked.bool(), [str(n) for n in names]


class MaskLabeler(Labeler):
    """The concept whose masks overlap the group's active region best (NetDissect).

    Network Dissection (Bau et al., CVPR 2017) binarises a unit's upsampled
    activation map at a high quantile and scores each concept by the
    intersection over union with the concept's segmentation masks, summed
    over images. Here the unit is a group (its map is the weighted sum of its
    channels) and the images are the group's exemplar crops: on each, the
    map is upsampled to the crop's size in the image (bilinear) and compared
    with the part of each concept mask inside the crop box::

        IoU(concept) = sum_k |A_k & M_k| / sum_k |A_k | M_k|

    where ``A_k`` is where the map is at the threshold or above. The label is
    the concept with the largest IoU, if it reaches ``min_iou`` (NetDissect's
    0.04); otherwise None.

    Parameters
    ----------
    masks : array (N, concepts, H, W) or mapping of name to array (N, H, W)
        Boolean concept masks for every data-set image, at the input size.
    names : sequence of str, optional
        Concept names for an array of masks.
    quantile : float
        The map's threshold is this quantile of the map values over the
        group's exemplars. NetDissect thresholds at the 0.995 quantile over a
        whole data set, where most positions are inactive; on the top
        exemplars, where the group is active, 0.8 (the top fifth of the
        positions) is the default.
    threshold : float, optional
        A fixed threshold on the map instead of the quantile.
    min_iou : float
        The IoU a concept needs to be the label.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.labeling import GroupEvidence
    >>> masks = {"top": torch.zeros(1, 4, 4, dtype=torch.bool), "left": torch.zeros(1, 4, 4)}
    >>> masks["top"][0, :2] = True
    >>> masks["left"][0, :, :2] = 1
    >>> activation = torch.zeros(1, 4, 4)
    >>> activation[0, 0] = 1.0  # the group fires on the first row
    >>> box = torch.tensor([[0, 0, 4, 4]])
    >>> evidence = GroupEvidence("g", NeuronGroup("l", [0]), torch.tensor([0]), box,
    ...                          None, None, None, activation)
    >>> answer = MaskLabeler(masks, threshold=0.5).label(evidence)
    >>> answer.label, answer.score, answer.evidence["iou"]["left"]
    ('top', 0.5, 0.2)
    """

    def __init__(
        self,
        masks: Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray],
        names: Sequence[str] | None = None,
        quantile: float = 0.8,
        threshold: float | None = None,
        min_iou: float = 0.04,
    ) -> None:
        self.masks, self.names = _as_masks(masks, names)
        if not 0 <= quantile < 1:
            raise ValueError(f"quantile must be in [0, 1), got {quantile!r}")
        if not 0 <= min_iou <= 1:
            raise ValueError(f"min_iou must be in [0, 1], got {min_iou!r}")
        self.quantile = quantile
        self.threshold = threshold
        self.min_iou = min_iou

    def label(self, evidence: GroupEvidence) -> GroupLabel:
        """The concept with the largest IoU against the group's thresholded maps."""
        if evidence.maps is None or evidence.maps.ndim != 3:
            raise ValueError(
                f"MaskLabeler needs the group's 2-d activation maps, but layer "
                f"{evidence.group.layer!r} has no spatial axes"
            )
        regions = []
        for index, box, activation in zip(
            evidence.indices.tolist(), evidence.boxes.tolist(), evidence.maps, strict=True
        ):
            top, left, height, width = box
            if index >= len(self.masks) or top + height > self.masks.shape[2]:
                raise ValueError(
                    f"masks are shaped {tuple(self.masks.shape)}, but exemplar image {index} with "
                    f"crop box {box} lies outside them; give masks for every data-set image "
                    f"at the input size"
                )
            # Network Dissection: the layer's coarse map brought to the crop's pixels, so it
            # can be compared with the concept masks pixel by pixel
            upsampled = F.interpolate(
                activation[None, None].float(), size=(height, width), mode="bilinear"
            )[0, 0]
            concept = self.masks[index, :, top : top + height, left : left + width]
            regions.append((upsampled, concept))
        if self.threshold is not None:
            threshold = float(self.threshold)
        else:
            # one threshold over all exemplars (Network Dissection's top-quantile rule): a
            # per-crop threshold would call some pixels of every crop active
            values = torch.cat([upsampled.flatten() for upsampled, _ in regions])
            threshold = float(torch.quantile(values, self.quantile))
        # IoU pooled over the exemplars (sums of intersections over sums of unions), not a
        # mean of per-crop IoUs, which small crops would dominate
        intersection = torch.zeros(len(self.names), dtype=torch.float64)
        union = torch.zeros(len(self.names), dtype=torch.float64)
        for upsampled, concept in regions:
            active = upsampled >= threshold
            intersection += (concept & active).flatten(1).sum(1)
            union += (concept | active).flatten(1).sum(1)
        iou = torch.where(union > 0, intersection / union.clamp_min(1), 0.0)
        best = int(iou.argmax())
        return GroupLabel(
            self.names[best] if float(iou[best]) >= self.min_iou else None,
            float(iou[best]),
            {"iou": dict(zip(self.names, iou.tolist(), strict=True)), "threshold": threshold},
        )
