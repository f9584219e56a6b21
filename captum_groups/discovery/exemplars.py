"""Top-k exemplars per neuron and per group, mined in one streaming, mergeable pass.

A neuron's *concept* is the set of inputs (or NeurFlow crops of inputs) that
activate it most (Cao et al., ICLR 2025): its top-k exemplars. A neuron's
activation is its mean over the axes other than the batch and the neuron
axis ``dim`` (space for (N, C, H, W) outputs, time for channels-last
(N, T, F) sequences with ``dim=-1``); a group's is its own reduction.
:class:`ExemplarMiner` keeps only the running top-k (memory does not grow
with the data set), and two miners that saw different shards merge into
exactly what one pass over both would give. A miner records what it was
built on (layer, k, scales, neuron axis, groups, image size and the range of
data-set indices it saw), and refuses to merge with a miner built otherwise
or one that saw some of the same indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._checks import check_positive_int
from .._data import Data, examples_at, iter_batches
from .._hooks import guarded_call, layer_outputs, run_to_layer
from ..groups import (
    GroupsLike,
    Layer,
    as_group_list,
    layer_name,
    neuron_means,
    resolve_layer,
)
from .crops import crop_and_resize, crop_boxes


def _neuron_axis(layer: nn.Module, output: Tensor, dim: int, name: str) -> int:
    """The axis of ``output`` that holds the neurons, after checking ``dim`` against it.

    A Linear layer applied to sequences (N, T, F) keeps its neurons on the
    last axis; asking for another axis is refused rather than mining tokens.
    """
    axis = dim if dim > 0 else output.ndim + dim
    if output.ndim < 2 or not 1 <= axis < output.ndim:
        raise ValueError(
            f"dim={dim} does not name a non-batch axis of layer {name!r}'s output of shape "
            f"{tuple(output.shape)}"
        )
    if isinstance(layer, nn.Linear) and output.ndim > 2 and axis != output.ndim - 1:
        raise ValueError(
            f"layer {name!r} is a Linear layer on {output.ndim}-d inputs, so its "
            f"{layer.out_features} neurons are on the last axis, but dim={dim} picks axis "
            f"{axis} of shape {tuple(output.shape)}; pass dim=-1"
        )
    return axis


@dataclass(frozen=True)
class TopExemplars:
    """The top-k exemplars of some units (neurons or groups).

    Attributes
    ----------
    values : Tensor
        (U, k) activations, highest first.
    indices : Tensor
        (U, k) data set index of each exemplar's image.
    boxes : Tensor
        (U, k, 4) crop box (top, left, height, width) in the image.
    """

    values: Tensor
    indices: Tensor
    boxes: Tensor

    def inputs(self, data: Data, unit: int) -> Tensor:
        """The exemplar inputs of one unit, cropped and resized like the model saw them.

        Parameters
        ----------
        data : Tensor, Dataset, DataLoader or list of batches
            The data set the exemplars were mined from, in the same order
            (read by the package's one data rule, :mod:`captum_groups._data`).
        unit : int
            Row of the unit.
        """
        if not 0 <= unit < len(self.indices):
            raise ValueError(
                f"unit must be a row between 0 and {len(self.indices) - 1}, got {unit}"
            )
        images = examples_at(data, self.indices[unit])
        if images.ndim != 4:
            return images
        crops = [
            crop_and_resize(image[None], box[None])
            for image, box in zip(images, self.boxes[unit], strict=True)
        ]
        return torch.cat(crops)


@dataclass(frozen=True)
class Exemplars:
    """Top-k exemplars of every neuron of a layer and, if asked, of some groups.

    Attributes
    ----------
    neurons : TopExemplars
        One row per neuron (channel) of the layer.
    groups : TopExemplars or None
        One row per group, in the order given.
    k : int
        Exemplars per unit.
    """

    neurons: TopExemplars
    groups: TopExemplars | None
    k: int


def _top_k(values: Tensor, ids: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top k per row, ties broken by the smaller candidate id (deterministic)."""
    ids_sorted, order = ids.sort(dim=1, stable=True)
    values_sorted = values.gather(1, order)
    values_sorted, order = values_sorted.sort(dim=1, descending=True, stable=True)
    return values_sorted[:, :k], ids_sorted.gather(1, order)[:, :k]


def _add_range(ranges: list[tuple[int, int]], new: tuple[int, int]) -> list[tuple[int, int]]:
    """Index ranges [start, end) with ``new`` added, adjacent ranges joined."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted([*ranges, new]):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


class ExemplarMiner:
    """Streaming top-k exemplar state for one layer; mergeable across shards.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module or str
        The layer whose neurons (and groups) to mine.
    k : int
        Exemplars per unit.
    groups : GroupSet or list of NeuronGroup, optional
        Groups of the layer to mine as well.
    scales : sequence of float, optional
        Mine NeurFlow crops of these relative sizes instead of whole images,
        e.g. :data:`NEURFLOW_SCALES`.
    start_index : int
        Data set index of the first example this miner will see. Shards of
        one data set need their own start, so that their index ranges do not
        overlap when they are merged.
    dim : int, optional
        Axis of the layer output that holds the neurons: 1 for (N, C, ...)
        outputs, -1 for channels-last sequences (N, T, F). By default the
        groups' ``dim`` (if groups are given), else 1.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> first = ExemplarMiner(model, "relu3", k=5)
    >>> second = ExemplarMiner(model, "relu3", k=5, start_index=200)
    >>> first.update(x[:200])
    >>> second.update(x[200:])
    >>> first.merge(second).result().neurons.indices.shape
    torch.Size([64, 5])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: Layer,
        k: int = 50,
        groups: GroupsLike | None = None,
        scales: Sequence[float] | None = None,
        start_index: int = 0,
        dim: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        check_positive_int(k, "k")
        if isinstance(start_index, bool) or not isinstance(start_index, int) or start_index < 0:
            raise ValueError(f"start_index must be a non-negative int, got {start_index!r}")
        self.model = model
        self.layer = resolve_layer(model, layer)
        self.layer_name = layer_name(model, self.layer)
        self.k = k
        self.groups = [] if groups is None else as_group_list(groups)
        for group in self.groups:
            if group.resolve(model) is not self.layer:
                raise ValueError(
                    f"groups: group {group!r} does not belong to the mined layer "
                    f"{self.layer_name!r}"
                )
        self.dim = self._neuron_dim(dim)
        if scales is not None:
            crop_boxes(8, 8, tuple(scales))  # validates the scales
        self.scales = tuple(scales) if scales is not None else None
        self.ranges: list[tuple[int, int]] = []
        self.next_index = start_index
        self.seen = 0
        self._state: list[tuple[Tensor, Tensor]] | None = None
        self._boxes: Tensor | None = None

    def _neuron_dim(self, dim: int | None) -> int:
        dims = {group.dim for group in self.groups}
        if dim is None:
            if len(dims) > 1:
                raise ValueError(f"groups use different neuron axes {sorted(dims)}; pass dim=")
            return dims.pop() if dims else 1
        if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0:
            raise ValueError(f"dim must be a non-zero int (axis 0 is the batch), got {dim!r}")
        if dims - {dim}:
            raise ValueError(
                f"dim={dim} but the groups select neurons along dim {sorted(dims)}; groups and "
                f"neurons must use the same axis"
            )
        return dim

    def _boxes_for(self, inputs: Tensor) -> Tensor:
        height, width = inputs.shape[-2:]
        boxes = crop_boxes(height, width, self.scales) if self.scales else None
        if boxes is None:
            boxes = torch.tensor([[0, 0, height, width]])
        if self._boxes is not None and not torch.equal(boxes, self._boxes):
            raise ValueError(
                f"inputs of {height}x{width} pixels differ in size from the images seen before; "
                f"all images must have the same size (crop boxes are shared)"
            )
        self._boxes = boxes
        return boxes

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of the images seen, or None (no images seen yet, or not images)."""
        if self._boxes is None:
            return None
        return int(self._boxes[0, 2]), int(self._boxes[0, 3])

    def update(self, inputs: Tensor) -> None:
        """Add a batch of examples (the next ones of the data set)."""
        if not isinstance(inputs, Tensor) or inputs.ndim < 2:
            raise TypeError("inputs must be a batched tensor")
        if inputs.device.type == "meta":
            raise ValueError("inputs are on the meta device, which holds shapes but no values")
        if inputs.is_floating_point() and not torch.isfinite(inputs).all():
            raise ValueError("inputs contain NaN or infinite values")
        if len(inputs) == 0:
            return
        boxes = self._boxes_for(inputs) if inputs.ndim == 4 else torch.tensor([[0, 0, 0, 0]])
        candidates = crop_and_resize(inputs, boxes) if self.scales else inputs
        with guarded_call(self.model, "ExemplarMiner.update"), torch.no_grad():
            (output,) = run_to_layer(self.model, candidates, self.layer)[:1]
        axis = _neuron_axis(self.layer, output, self.dim, self.layer_name)
        scores = [neuron_means(output, axis).T]
        if self.groups:
            scores.append(torch.stack([g(output) for g in self.groups]))
        first_id = self.next_index * len(boxes)
        ids = torch.arange(first_id, first_id + candidates.shape[0], device=output.device)
        new_state = []
        for i, unit_scores in enumerate(scores):
            unit_ids = ids.expand(unit_scores.shape[0], -1)
            if self._state is not None:
                old_values, old_ids = self._state[i]
                unit_scores = torch.cat([old_values, unit_scores], 1)
                unit_ids = torch.cat([old_ids, unit_ids], 1)
            new_state.append(_top_k(unit_scores.float(), unit_ids, self.k))
        self._state = new_state
        self.ranges = _add_range(self.ranges, (self.next_index, self.next_index + len(inputs)))
        self.next_index += inputs.shape[0]
        self.seen += candidates.shape[0]

    def _check_mergeable(self, other: ExemplarMiner) -> None:
        if not isinstance(other, ExemplarMiner):
            raise TypeError(f"other must be an ExemplarMiner, got {type(other).__name__}")
        for what, mine, theirs in (
            ("layer", self.layer_name, other.layer_name),
            ("k", self.k, other.k),
            ("scales", self.scales, other.scales),
            ("dim", self.dim, other.dim),
            ("groups", self.groups, other.groups),
        ):
            if mine != theirs:
                raise ValueError(
                    f"cannot merge miners built on different {what}: {mine!r} and {theirs!r}"
                )
        if self.layer is not other.layer:
            raise ValueError(
                f"cannot merge miners of layer {self.layer_name!r} of two different models"
            )
        if self.image_size and other.image_size and self.image_size != other.image_size:
            raise ValueError(
                f"cannot merge miners that saw images of different sizes: {self.image_size} and "
                f"{other.image_size} (crop boxes would not match)"
            )
        for start, end in self.ranges:
            for other_start, other_end in other.ranges:
                if start < other_end and other_start < end:
                    raise ValueError(
                        f"cannot merge miners whose data-set index ranges overlap: [{start}, "
                        f"{end}) and [{other_start}, {other_end}); give each shard's miner its "
                        f"own start_index"
                    )

    def merge(self, other: ExemplarMiner) -> ExemplarMiner:
        """A miner holding the top-k over what both miners saw.

        Both must be built on the same layer, k, scales, neuron axis and
        groups, have seen images of the same size, and have seen disjoint
        data-set index ranges (see ``start_index``).
        """
        self._check_mergeable(other)
        if self._state is None or other._state is None:
            return other if self._state is None else self
        groups = self.groups or None
        merged = ExemplarMiner(self.model, self.layer, self.k, groups, self.scales, dim=self.dim)
        merged._state = [
            _top_k(torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1), self.k)
            for a, b in zip(self._state, other._state, strict=True)
        ]
        merged._boxes = self._boxes
        merged.seen = self.seen + other.seen
        merged.ranges = sorted(self.ranges + other.ranges)
        merged.next_index = max(self.next_index, other.next_index)
        return merged

    def result(self) -> Exemplars:
        """The top-k exemplars so far."""
        if self._state is None or self.seen == 0:
            raise ValueError("no data was seen; the data is empty")
        if self.seen < self.k:
            raise ValueError(f"k={self.k} is larger than the data ({self.seen} candidates)")
        tops = []
        for values, ids in self._state:
            n_boxes = len(self._boxes) if self._boxes is not None else 1
            ids = ids.cpu()
            boxes = (
                self._boxes[ids % n_boxes]
                if self._boxes is not None
                else ids.new_zeros((*ids.shape, 4))
            )
            tops.append(TopExemplars(values.cpu(), ids // n_boxes, boxes))
        return Exemplars(tops[0], tops[1] if len(tops) > 1 else None, self.k)


def mine_exemplars(
    model: nn.Module,
    layer: Layer,
    data: Data,
    k: int = 50,
    groups: GroupsLike | None = None,
    scales: Sequence[float] | None = None,
    batch_size: int = 256,
    progress: bool = True,
    dim: int | None = None,
) -> Exemplars:
    """Top-k exemplars of every neuron (and group) of a layer over a data set.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module or str
        The layer (module or dotted name).
    data : Tensor, Dataset, DataLoader or list of batches
        The examples (batches unpacked as in :func:`captum_groups._data.batch_inputs`:
        tensors, ``(x, y)`` tuples or dicts). Dataset indices count examples in this order.
    k : int
        Exemplars per unit (NeurFlow uses 50).
    groups : GroupSet or list of NeuronGroup, optional
        Groups to mine as well, by their own reduction.
    scales : sequence of float, optional
        Mine multi-scale crops (NeurFlow: ``NEURFLOW_SCALES``) instead of
        whole images; each crop is resized back to the image size.
    batch_size : int
        Examples per forward pass when ``data`` is a tensor.
    progress : bool
        Show a progress bar.
    dim : int, optional
        Axis of the layer output that holds the neurons (see
        :class:`ExemplarMiner`); -1 for channels-last sequences (N, T, F).

    Returns
    -------
    Exemplars

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.discovery import NEURFLOW_SCALES
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> found = mine_exemplars(model, "relu3", x, k=10, scales=NEURFLOW_SCALES, progress=False)
    >>> found.neurons.values.shape, found.neurons.boxes.shape
    (torch.Size([64, 10]), torch.Size([64, 10, 4]))
    """
    miner = ExemplarMiner(model, layer, k, groups, scales, dim=dim)
    with guarded_call(model, "mine_exemplars"):
        for batch in tqdm(
            iter_batches(data, batch_size),
            desc="mining exemplars",
            disable=not progress,
            leave=False,
        ):
            miner.update(batch)
    return miner.result()


def exemplar_activations(
    model: nn.Module,
    layer: Layer,
    exemplars: TopExemplars,
    data: Data,
    neurons: Sequence[int] | None = None,
    batch_size: int = 256,
    dim: int = 1,
) -> Tensor:
    """Each neuron's exemplars seen by the layer: (neurons, k, C) activation vectors.

    The input of :class:`ConceptClustering`: row ``i`` holds the layer's
    activation vector (spatial mean per channel) on each of neuron
    ``neurons[i]``'s top-k exemplars, as in NeurFlow. ``data`` is the data
    set the exemplars were mined from (a tensor, Dataset, DataLoader or list
    of batches, in the same order); ``dim`` is the layer's neuron axis.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> found = mine_exemplars(model, "relu3", x, k=8, progress=False)
    >>> exemplar_activations(model, "relu3", found.neurons, x, neurons=[0, 5]).shape
    torch.Size([2, 8, 64])
    """
    module = resolve_layer(model, layer)
    rows = range(exemplars.values.shape[0]) if neurons is None else neurons
    with guarded_call(model, "exemplar_activations"):
        inputs = torch.cat([exemplars.inputs(data, row) for row in rows])
        vectors = layer_outputs(model, inputs, module, batch_size)
    axis = _neuron_axis(module, vectors, dim, layer_name(model, module))
    return neuron_means(vectors, axis).view(len(rows), exemplars.values.shape[1], -1)
