"""Passes over the data for circuit building: images in order, crops per batch, summaries.

A circuit is built from the images of its target (those the model predicts as
the target class) cut into NeurFlow's multi-scale crops. Nothing is kept of
a crop but its *summary*: each circuit layer's neuron means. Whenever a
layer needs full activations (integrated gradients on exemplar crops, the
adaptive-tau pool), they are computed again from the images, batch by batch,
in a later pass. So memory holds the summaries plus one batch.

Every computation on crops runs on fixed groups of crops, cut by position in
the target's own crop sequence (:class:`Rebatcher`). Floating-point results
therefore do not depend on how a data loader batches the images, nor on
which other targets are built in the same pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._model.capture import LayerCapture, record, run_to_layer
from .._model.guards import preserve_buffers
from ..data import Data, batch_inputs, check_reiterable, indexed_batches, n_examples
from ..discovery.crops import crop_and_resize
from ..groups import NeuronGroup, neuron_means

__all__ = ["ImageReader", "Rebatcher", "Selection", "TargetKey", "model_device_dtype"]

TargetKey = int | NeuronGroup


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the model computes, and in which floating dtype."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


class Rebatcher:
    """Cuts a stream of (ids, tensor) batches into groups of exactly ``size`` rows (the last
    group may be smaller), whatever the sizes of the incoming batches.

    Examples
    --------
    >>> batcher = Rebatcher(3)
    >>> out = batcher.push(torch.arange(2), torch.zeros(2)) + batcher.push(torch.arange(2, 7),
    ...                                                                        torch.zeros(5))
    >>> [ids.tolist() for ids, _ in out + batcher.flush()]
    [[0, 1, 2], [3, 4, 5], [6]]
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: list[Tensor] = []
        self._rows: list[Tensor] = []
        self._count = 0

    def push(self, ids: Tensor, rows: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Add rows; return the full groups now available.

        The groups are views of one tensor (the rows pending, joined once),
        and the rows left over are copied out of it, so a batch of any size
        is held once, not once per group.
        """
        if len(ids):
            self._ids.append(ids)
            self._rows.append(rows)
            self._count += len(ids)
        if self._count < self.size:
            return []
        ids_all, rows_all = _joined(self._ids), _joined(self._rows)
        full = self._count - self._count % self.size
        groups = list(
            zip(ids_all[:full].split(self.size), rows_all[:full].split(self.size), strict=True)
        )
        self._count -= full
        self._ids = [ids_all[full:].clone()] if self._count else []
        self._rows = [rows_all[full:].clone()] if self._count else []
        return groups

    def flush(self) -> list[tuple[Tensor, Tensor]]:
        """The remaining rows, as one last group (or none)."""
        if not self._count:
            return []
        group = (_joined(self._ids), _joined(self._rows))
        self._ids, self._rows, self._count = [], [], 0
        return [group]


def _joined(parts: list[Tensor]) -> Tensor:
    """The parts as one tensor, without a copy when there is one part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class ImageReader:
    """Reads images of ``data`` in order, on the model's device and dtype, checked.

    Parameters
    ----------
    data : Tensor, Dataset, DataLoader or list of batches
        Images (N, C, H, W), read by the package's one batch rule.
    device, dtype
        Where the images go.
    batch_size : int
        Images per read when the reader batches itself.
    progress : bool
        Show a progress bar over the images of each pass.
    """

    def __init__(
        self,
        data: Data,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
        progress: bool,
    ) -> None:
        check_reiterable(data, "data")
        self.data, self.device, self.dtype = data, device, dtype
        self.batch_size, self.progress = batch_size, progress
        self.size: tuple[int, ...] | None = None
        self.total = n_examples(data)

    def _checked(self, images: Tensor, first: int) -> Tensor:
        if images.ndim != 4:
            raise ValueError(
                f"data must hold images shaped (N, C, H, W), got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(f"data must hold floating-point images, got {images.dtype}")
        if self.size is None:
            self.size = tuple(images.shape[1:])
        elif tuple(images.shape[1:]) != self.size:
            raise ValueError(
                f"data must hold images of one size; image {first} is "
                f"{tuple(images.shape[1:])}, the first was {self.size}"
            )
        if not torch.isfinite(images).all():
            raise ValueError(f"data contains NaN or infinite values (batch starting at {first})")
        if images.is_inference():  # made inside torch.inference_mode(): autograd needs a copy
            images = images.clone()
        return images.to(self.device, self.dtype)

    def _batches(self, indices: Sequence[int] | None) -> Iterator[tuple[Tensor, Tensor]]:
        for ids, batch in indexed_batches(self.data, self.batch_size, "data", indices):
            yield ids, batch_inputs(batch)

    def read(self, indices: Sequence[int] | None, desc: str) -> Iterator[tuple[Tensor, Tensor]]:
        """(data-set indices, images): all images in data order, or those at ``indices``."""
        total = self.total if indices is None else len(indices)
        with tqdm(
            total=total, desc=desc, unit="image", disable=not self.progress, leave=False
        ) as bar:
            for ids, images in self._batches(indices):
                yield ids, self._checked(images, int(ids[0]))
                bar.update(len(ids))


@dataclass
class Selection:
    """The images of some targets and what is kept of their crops.

    Attributes
    ----------
    targets : list
        The targets read from these images (class indices, or one group).
    boxes : Tensor
        (M, 4) crop boxes of every image.
    image_ids : list of int
        Data-set index of each selected image, in data order. Crop ``c`` is
        box ``c % M`` of image ``image_ids[c // M]``.
    summaries : dict of str to Tensor
        Each circuit layer's neuron means per crop, (crops, C), on the CPU.
    target_values : dict
        Each target's value per crop, (crops,).

    A selection is a streaming statistic: selections of disjoint shards of
    images merge (:meth:`merge`), and :meth:`state_dict` holds tensors and
    plain data only, so it crosses processes and disk.
    """

    targets: list[TargetKey]
    boxes: Tensor
    image_ids: list[int] = field(default_factory=list)
    summaries: dict[str, Tensor] = field(default_factory=dict)
    target_values: dict[TargetKey, Tensor] = field(default_factory=dict)

    @property
    def n_crops(self) -> int:
        """Number of crops."""
        return len(self.image_ids) * len(self.boxes)

    def crop_ref(self, crop: int) -> tuple[int, tuple[int, ...]]:
        """Data-set index and box (top, left, height, width) of a crop."""
        image, box = divmod(crop, len(self.boxes))
        return self.image_ids[image], tuple(self.boxes[box].tolist())

    def state_dict(self) -> dict[str, Any]:
        """The crop summaries as tensors and plain data (targets as class indices or group
        dicts): what crosses processes and disk."""
        return {
            "targets": [t if isinstance(t, int) else t.to_dict() for t in self.targets],
            "boxes": self.boxes,
            "image_ids": torch.tensor(self.image_ids, dtype=torch.long),
            "summaries": dict(self.summaries),
            "target_values": [self.target_values[t] for t in self.targets],
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Selection:
        """A selection holding what :meth:`state_dict` saved."""
        targets = [t if isinstance(t, int) else NeuronGroup.from_dict(t) for t in state["targets"]]
        return cls(
            targets,
            state["boxes"],
            [int(i) for i in state["image_ids"]],
            dict(state["summaries"]),
            dict(zip(targets, state["target_values"], strict=True)),
        )

    def merge(self, other: Selection) -> Selection:
        """The summaries of both selections' images, in data-set index order; the two must
        have the same targets, boxes and layers, and no image in common.

        Examples
        --------
        >>> boxes = torch.tensor([[0, 0, 8, 8]])
        >>> a = Selection([3], boxes, [4], {"l": torch.ones(1, 2)}, {3: torch.ones(1)})
        >>> b = Selection([3], boxes, [1], {"l": torch.zeros(1, 2)}, {3: torch.zeros(1)})
        >>> merged = a.merge(b)
        >>> merged.image_ids, merged.summaries["l"][:, 0].tolist()
        ([1, 4], [0.0, 1.0])
        """
        if self.targets != other.targets or not torch.equal(self.boxes, other.boxes):
            raise ValueError("cannot merge selections of other targets or crop boxes")
        if set(self.summaries) != set(other.summaries):
            raise ValueError(
                f"cannot merge selections of other layers: {sorted(self.summaries)} and "
                f"{sorted(other.summaries)}"
            )
        if set(self.image_ids) & set(other.image_ids):
            raise ValueError("cannot merge selections that share images")
        ids = torch.tensor(self.image_ids + other.image_ids, dtype=torch.long)
        order = ids.argsort(stable=True)
        # each image owns len(boxes) consecutive rows: reorder whole images
        rows = (order[:, None] * len(self.boxes) + torch.arange(len(self.boxes))).flatten()

        def joined(first: Tensor, second: Tensor) -> Tensor:
            return torch.cat([first, second])[rows]

        return Selection(
            list(self.targets),
            self.boxes,
            ids[order].tolist(),
            {n: joined(v, other.summaries[n]) for n, v in self.summaries.items()},
            {t: joined(v, other.target_values[t]) for t, v in self.target_values.items()},
        )


class Summariser:
    """Crops a selection's images in fixed groups and keeps each crop's summaries.

    Parameters
    ----------
    model : nn.Module
        The model.
    selection : Selection
        Receives the image ids, summaries and target values.
    layers : dict of str to nn.Module
        The layers to summarise (circuit layers, and a target group's layer).
    batch_size : int
        Crops per forward pass.
    most_images : int or None
        At most how many images will be pushed, where known: the summaries
        are then written in place, with no copy at the end.
    """

    def __init__(
        self,
        model: nn.Module,
        selection: Selection,
        layers: dict[str, nn.Module],
        batch_size: int,
        most_images: int | None = None,
    ) -> None:
        self.model, self.selection, self.layers = model, selection, layers
        # whole images per forward pass, each giving all its crops: batch_size crops or so
        self._batcher = Rebatcher(max(1, batch_size // len(selection.boxes)))
        most_rows = None if most_images is None else most_images * len(selection.boxes)
        self._parts = {name: _Rows(most_rows) for name in layers}
        self._values = {target: _Rows(most_rows) for target in selection.targets}

    def push(self, ids: Tensor, images: Tensor) -> None:
        """The next selected images."""
        for group in self._batcher.push(ids, images):
            self._summarise(*group)

    def _summarise(self, ids: Tensor, images: Tensor) -> None:
        crops = crop_and_resize(images, self.selection.boxes)
        captures = {name: LayerCapture(module) for name, module in self.layers.items()}
        output = record(self.model, crops, list(captures.values()))
        # a crop's summary: each neuron's spatial mean, all that ranking and grouping read
        for name, capture in captures.items():
            self._parts[name].append(neuron_means(capture.output[0]))
        for target in self.selection.targets:
            if isinstance(target, int):
                values = output[:, target]
            else:
                values = target(captures[str(target.layer)].output[0])
            self._values[target].append(values)
        self.selection.image_ids.extend(ids.tolist())

    def finish(self) -> Selection:
        """Summarise the last group; the selection, complete."""
        for group in self._batcher.flush():
            self._summarise(*group)
        self.selection.summaries = {name: rows.joined() for name, rows in self._parts.items()}
        self.selection.target_values = {
            target: rows.joined() for target, rows in self._values.items()
        }
        return self.selection


class _Rows:
    """Rows appended batch by batch into large CPU blocks, joined once at the end.

    A block holds at least ``block_bytes``: the allocator maps such blocks on
    their own and gives them back when freed, so many small per-batch tensors
    never fragment the heap (with them, the resident memory after joining was
    about twice the summaries). Pages of a block that are never written are
    not resident, so the first block is made as large as ``most_rows`` (up to
    ``first_block_bytes``), and a single block is returned as a view, without
    a copy.
    """

    block_bytes = 64 * 2**20
    first_block_bytes = 2**30

    def __init__(self, most_rows: int | None = None) -> None:
        self.most_rows = most_rows
        self._blocks: list[Tensor] = []
        self._filled = 0

    def append(self, rows: Tensor) -> None:
        """Copy ``rows`` (n, ...) after the rows so far."""
        rows = rows.detach()
        if not self._blocks or self._filled + len(rows) > len(self._blocks[-1]):
            row_bytes = max(1, rows[0].numel() * rows.element_size()) if len(rows) else 1
            size = max(len(rows), -(-self.block_bytes // row_bytes))
            if not self._blocks and self.most_rows is not None:
                size = max(size, min(self.most_rows, self.first_block_bytes // row_bytes))
            self._close_block()
            self._blocks.append(torch.empty((size, *rows.shape[1:]), dtype=rows.dtype))
        self._blocks[-1][self._filled : self._filled + len(rows)] = rows
        self._filled += len(rows)

    def _close_block(self) -> None:
        if self._blocks:
            self._blocks[-1] = self._blocks[-1][: self._filled]
            self._filled = 0

    def joined(self) -> Tensor:
        """All rows as one (N, ...) tensor; the blocks are released."""
        if not self._blocks:
            return torch.empty(0)
        if len(self._blocks) == 1:
            joined = self._blocks[0][: self._filled]
        else:
            self._close_block()
            joined = torch.cat(self._blocks)
        self._blocks, self._filled = [], 0
        return joined


class CropActivations:
    """Recomputes a layer's full activations on chosen crops of a selection, in fixed groups.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module
        The layer whose output is wanted.
    selection : Selection
        Where the crops come from.
    crops : sequence of int
        The crops wanted, sorted.
    batch_size : int
        Crops per forward pass (the pass stops at the layer).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        selection: Selection,
        crops: Sequence[int],
        batch_size: int,
    ) -> None:
        self.model, self.layer, self.selection = model, layer, selection
        per_image: dict[int, list[int]] = {}
        for crop in crops:
            per_image.setdefault(selection.image_ids[crop // len(selection.boxes)], []).append(crop)
        self.per_image = per_image
        self._batcher = Rebatcher(batch_size)

    @property
    def images(self) -> list[int]:
        """Data-set indices of the images that hold wanted crops."""
        return sorted(self.per_image)

    def push(self, ids: Tensor, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Images read in order; returns groups of (crop ids, activations) now complete."""
        crop_ids, crops = [], []
        boxes = self.selection.boxes
        for image_id, image in zip(ids.tolist(), images, strict=True):
            wanted = self.per_image.get(image_id)
            if wanted is None:
                continue
            crops.append(crop_and_resize(image[None], boxes[[c % len(boxes) for c in wanted]]))
            crop_ids.extend(wanted)
        if not crop_ids:
            return []
        groups = self._batcher.push(torch.tensor(crop_ids), torch.cat(crops))
        return [(ids_, self._activations(rows)) for ids_, rows in groups]

    def flush(self) -> list[tuple[Tensor, Tensor]]:
        """The last group."""
        return [(ids, self._activations(rows)) for ids, rows in self._batcher.flush()]

    def _activations(self, crops: Tensor) -> Tensor:
        with torch.no_grad(), preserve_buffers(self.model):
            return run_to_layer(self.model, crops, self.layer)[0]
