"""Gathering each group's evidence: exemplars, their crops, activations and maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .._model.capture import layer_outputs
from ..data import Data, batch_inputs
from ..discovery.crops import crop_and_resize
from ..discovery.mining import mine_exemplars
from ..groups import NeuronGroup
from .base import GroupEvidence

__all__ = ["gather_evidence"]

Exemplar = tuple[int, tuple[int, ...]]


def _images(data: Data, indices: Tensor) -> Tensor:
    """The examples at some data-set indices (random access into the data)."""
    if isinstance(data, Tensor):
        return data[indices]
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, Dataset):
        return torch.stack([batch_inputs(dataset[int(i)]) for i in indices])
    raise TypeError(
        "data must be a tensor, a Dataset or a DataLoader to label groups: their exemplars are "
        f"looked up by data-set index; got {type(data).__name__}"
    )


def _whole_where_empty(boxes: Tensor, images: Tensor) -> Tensor:
    """Boxes of whole images where the exemplars are whole images (mined without crops)."""
    if images.ndim != 4:
        return boxes
    whole = torch.tensor([0, 0, *images.shape[-2:]], dtype=boxes.dtype)
    empty = (boxes[:, 2] == 0) | (boxes[:, 3] == 0)
    return torch.where(empty[:, None], whole, boxes)


def _crops(images: Tensor, boxes: Tensor) -> Tensor:
    if images.ndim != 4:
        return images
    return torch.cat(
        [crop_and_resize(image[None], box[None]) for image, box in zip(images, boxes, strict=True)]
    )


def _maps(group: NeuronGroup, output: Tensor) -> Tensor | None:
    """The group's weighted channel sum at every position, (K, *spatial), or None."""
    if output.ndim <= 2:
        return None
    axis = group.channel_axis(output.ndim)
    index = torch.tensor(group.indices, device=output.device)
    selected = output.index_select(axis, index).movedim(axis, 1)
    weights = torch.ones(len(group)) if group.weights is None else torch.tensor(group.weights)
    weights = weights.to(selected.dtype).to(selected.device)
    return (selected * weights.view(1, -1, *[1] * (selected.ndim - 2))).sum(1)


def gather_evidence(
    model: nn.Module,
    groups: Sequence[tuple[str, NeuronGroup]],
    data: Data,
    k: int | None,
    scales: Sequence[float] | None,
    stored: Mapping[str, Sequence[Exemplar]] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, GroupEvidence]:
    """Each group's evidence, keyed like ``groups``.

    With ``k`` the top-k exemplars of every group are mined from ``data``
    (one streaming pass per layer, crops at ``scales``); with ``k=None`` the
    exemplars in ``stored`` (a circuit's) are used.
    """
    # groups of one layer share one mining pass over the data
    by_layer: dict[nn.Module, list[tuple[str, NeuronGroup]]] = {}
    for key, group in groups:
        by_layer.setdefault(group.resolve(model), []).append((key, group))
    evidence: dict[str, GroupEvidence] = {}
    for module, items in by_layer.items():
        if k is None:
            chosen = []
            for key, _ in items:
                if not stored or not stored.get(key):
                    raise ValueError(
                        f"group {key!r} has no stored exemplars; pass k= to mine them from data"
                    )
                chosen.append(
                    (
                        torch.tensor([i for i, _ in stored[key]]),
                        torch.tensor([list(box) for _, box in stored[key]]),
                    )
                )
        else:
            mined = mine_exemplars(
                model,
                module,
                data,
                k,
                groups=[g for _, g in items],
                scales=scales,
                batch_size=batch_size,
                progress=progress,
            ).groups
            chosen = [(mined.indices[row], mined.boxes[row]) for row in range(len(items))]
        for (key, group), (indices, boxes) in zip(items, chosen, strict=True):
            images = _images(data, indices)
            boxes = _whole_where_empty(boxes, images)
            crops = _crops(images, boxes)
            # the crops' own activations (not the whole images'): what a labeler sees is
            # what the group responded to
            output = layer_outputs(model, crops, module, batch_size)
            values = group(output)
            # strongest first, ties in mining order, so labelers that read the top few agree
            order = values.argsort(descending=True, stable=True)
            output = output[order]
            evidence[key] = GroupEvidence(
                name=key,
                group=group,
                indices=indices[order.cpu()],
                boxes=boxes[order.cpu()],
                crops=crops[order],
                values=values[order].cpu(),
                activations=group.neuron_activations(output).cpu(),
                maps=None if (maps := _maps(group, output)) is None else maps.cpu(),
            )
    return {key: evidence[key] for key, _ in groups}
