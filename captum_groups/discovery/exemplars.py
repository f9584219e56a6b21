"""Top-k exemplars per neuron and per group, mined in one streaming, mergeable pass.

A neuron's *concept* is the set of inputs (or NeurFlow crops of inputs) that
activate it most (Cao et al., ICLR 2025): its top-k exemplars. A neuron's
activation is its mean over the axes other than the batch and the neuron
axis ``dim`` (space for (N, C, H, W) outputs, time for channels-last
(N, T, F) sequences with ``dim=-1``); a group's is its own reduction.
:class:`ExemplarMiner` keeps only the running top-k (memory does not grow
with the data set), and two miners that saw different shards merge into
exactly what one pass over both would give. A miner records what it was
built on (layer, k, scales, neuron axis, groups, image size and the data-set
indices it saw), and refuses to merge with a miner built otherwise or one
that saw some of the same indices. Its :meth:`ExemplarMiner.state_dict` holds
tensors and plain data only (the layer by name, never the model), so miners
cross processes (torch.distributed object collectives, Ray) and disk, and
:meth:`ExemplarMiner.from_state_dict` rebuilds one beside a local model.
Shards may be any disjoint sets of indices, e.g. a ``DistributedSampler``'s
strided ones (:func:`captum_groups.data.indexed_batches` numbers examples
by data-set index and leaves out the sampler's padding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._model.capture import probe_runs, run_to_layer
from .._model.guards import guarded_call
from .._validation.checks import CALL, check_positive_int, validate
from .._validation.errors import ParameterError
from ..data import Data, examples_at
from ..groups import (
    GroupsLike,
    Layer,
    NeuronGroup,
    as_group_list,
    layer_name,
    neuron_means,
    resolve_layer,
)
from .crops import crop_and_resize, crop_boxes

_CHANNELS_FIRST = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)
"""Layers whose (N, C, L) outputs have their neurons (channels) on axis 1."""


def _neuron_axis(
    layer: nn.Module, output: Tensor, dim: int, name: str, dim_given: bool = True
) -> int:
    """The axis of ``output`` that holds the neurons, after checking ``dim`` against it.

    A Linear layer applied to sequences (N, T, F) keeps its neurons on the
    last axis; asking for another axis is refused rather than mining tokens.
    A 3-d output of another layer (a ReLU after a Linear on tokens, a
    LayerNorm) is ambiguous: (N, T, F) and (N, C, L) look alike, so ``dim``
    must be given, unless the layer is a 1-d convolution or pooling.
    """
    ambiguous = output.ndim == 3 and not isinstance(layer, (nn.Linear, *_CHANNELS_FIRST))
    if ambiguous and not dim_given:
        raise ParameterError(
            "dim",
            f"layer {name!r} ({type(layer).__name__}) outputs {tuple(output.shape)}, which "
            f"could be (N, tokens, features) or (N, channels, length); say which axis holds "
            f"the neurons: dim=-1 for (N, T, F) sequences, dim=1 for (N, C, L) channels",
        )
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

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.distributed import mine_exemplars
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> top = mine_exemplars(model, "relu3", x, k=4, progress=False).neurons
    >>> top.values.shape, top.indices.shape, top.boxes.shape  # units x k (x 4 box corners)
    (torch.Size([64, 4]), torch.Size([64, 4]), torch.Size([64, 4, 4]))
    >>> bool((top.values[:, :-1] >= top.values[:, 1:]).all())  # best first
    True
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
            (read by the package's one data rule, :mod:`captum_groups.data`).
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

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.distributed import mine_exemplars
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> found = mine_exemplars(model, "relu3", x, k=6, groups=[NeuronGroup("relu3", [0, 1])],
    ...                        progress=False)
    >>> found.k, found.neurons.values.shape, found.groups.values.shape
    (6, torch.Size([64, 6]), torch.Size([1, 6]))
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


def _ranges(indices: Tensor) -> list[tuple[int, int]]:
    """Sorted unique indices as [start, end) ranges of consecutive ones."""
    if not len(indices):
        return []
    values = indices.tolist()
    ranges, start, previous = [], values[0], values[0]
    for value in values[1:]:
        if value != previous + 1:
            ranges.append((start, previous + 1))
            start = value
        previous = value
    ranges.append((start, previous + 1))
    return ranges


def _joined_indices(chunks: Sequence[Tensor], owner: str) -> Tensor:
    """The chunks of seen indices as one sorted tensor; an index seen twice is refused."""
    joined = torch.cat(list(chunks)) if chunks else torch.zeros(0, dtype=torch.long)
    unique, counts = joined.unique(sorted=True, return_counts=True)
    if (counts > 1).any():
        twice = int(unique[counts > 1][0])
        raise ValueError(
            f"{owner} saw data-set index {twice} more than once; give each example once (a "
            f"shard's start_index, or explicit indices that do not repeat)"
        )
    return unique


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
        Data set index of the first example this miner will see, when
        :meth:`update` is given no indices (each batch then follows the last).
        Shards of one data set need their own start, so that their indices do
        not overlap when they are merged.
    dim : int, optional
        Axis of the layer output that holds the neurons: 1 for (N, C, ...)
        outputs, -1 for channels-last sequences (N, T, F). By default the
        groups' ``dim`` (if groups are given), else 1.
    call : int, optional
        For a module that runs several times in one forward pass, the run to
        mine (0 = first; see :class:`~captum_groups.NeuronGroup`). By default
        the groups' ``call``; a layer that runs more than once with no call
        named is refused on the first batch, with its calls listed.

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
        call: int | None = None,
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
        self.call = self._layer_call(call)
        self._probed = False
        self._dim_given = dim is not None or any(g.dim is not None for g in self.groups)
        if scales is not None:
            crop_boxes(8, 8, tuple(scales))  # validates the scales
        self.scales = tuple(scales) if scales is not None else None
        self._indices: list[Tensor] = []
        self.next_index = start_index
        self.seen = 0
        self._state: list[tuple[Tensor, Tensor]] | None = None
        self._boxes: Tensor | None = None

    def _neuron_dim(self, dim: int | None) -> int:
        # a group without dim reads axis 1 (3-d outputs refuse it: see _neuron_axis)
        dims = {1 if group.dim is None else group.dim for group in self.groups}
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

    def _layer_call(self, call: int | None) -> int | None:
        validate({"call": CALL}, {"call": call})
        calls = {group.call for group in self.groups} | ({call} if call is not None else set())
        if len(calls) > 1:
            raise ParameterError(
                "call",
                f"call={call} but the groups read the runs {sorted(calls, key=str)} of layer "
                f"{self.layer_name!r}; a miner mines one run of its layer",
            )
        return calls.pop() if calls else None

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

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The data-set indices seen, as [start, end) ranges of consecutive indices."""
        return _ranges(_joined_indices(self._indices, "the miner"))

    def update(self, inputs: Tensor, indices: Tensor | Sequence[int] | None = None) -> None:
        """Add a batch of examples: those at data-set ``indices``, or by default the next
        ones after the last batch (from ``start_index``)."""
        if not isinstance(inputs, Tensor) or inputs.ndim < 2:
            raise TypeError("inputs must be a batched tensor")
        if inputs.device.type == "meta":
            raise ValueError("inputs are on the meta device, which holds shapes but no values")
        if inputs.is_floating_point() and not torch.isfinite(inputs).all():
            raise ValueError("inputs contain NaN or infinite values")
        if len(inputs) == 0:
            return
        if indices is None:
            ids_seen = torch.arange(self.next_index, self.next_index + len(inputs))
        else:
            ids_seen = torch.as_tensor(indices, dtype=torch.long).flatten().cpu()
            if len(ids_seen) != len(inputs) or (ids_seen < 0).any():
                raise ValueError(
                    f"indices must give one data-set index >= 0 per example ({len(inputs)}), "
                    f"got {ids_seen.tolist()[:8]}"
                )
        boxes = self._boxes_for(inputs) if inputs.ndim == 4 else torch.tensor([[0, 0, 0, 0]])
        candidates = crop_and_resize(inputs, boxes) if self.scales else inputs
        with guarded_call(self.model, "ExemplarMiner.update"), torch.no_grad():
            if not self._probed:
                probe_runs(self.model, candidates[:1], self.layer, self.call)
                self._probed = True
            (output,) = run_to_layer(self.model, candidates, self.layer, call=self.call)[:1]
        axis = _neuron_axis(self.layer, output, self.dim, self.layer_name, self._dim_given)
        scores = [neuron_means(output, axis).T]
        if self.groups:
            scores.append(torch.stack([g(output) for g in self.groups]))
        # candidate id: the image's data-set index times the boxes per image, plus its box
        per_image = torch.arange(len(boxes)).repeat(len(inputs)) if self.scales else 0
        ids = (
            ids_seen.repeat_interleave(len(boxes) if self.scales else 1) * len(boxes) + per_image
        ).to(output.device)
        new_state = []
        for i, unit_scores in enumerate(scores):
            unit_ids = ids.expand(unit_scores.shape[0], -1)
            if self._state is not None:
                old_values, old_ids = self._state[i]
                unit_scores = torch.cat([old_values, unit_scores], 1)
                unit_ids = torch.cat([old_ids, unit_ids], 1)
            new_state.append(_top_k(unit_scores.float(), unit_ids, self.k))
        self._state = new_state
        self._indices.append(ids_seen)
        self.next_index = int(ids_seen.max()) + 1 if indices is None else self.next_index
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
        if self.image_size and other.image_size and self.image_size != other.image_size:
            raise ValueError(
                f"cannot merge miners that saw images of different sizes: {self.image_size} and "
                f"{other.image_size} (crop boxes would not match)"
            )
        mine, theirs = (_joined_indices(m._indices, "a miner") for m in (self, other))
        if torch.isin(mine, theirs).any():
            both = mine[torch.isin(mine, theirs)]
            first = _ranges(mine)[0] if mine.numel() else (0, 0)
            other_first = _ranges(theirs)[0] if theirs.numel() else (0, 0)
            raise ValueError(
                f"cannot merge miners whose data-set indices overlap (index {int(both[0])}): "
                f"index ranges overlap: [{first[0]}, {first[1]}) and [{other_first[0]}, "
                f"{other_first[1]}); give each shard's miner its own start_index, or disjoint "
                f"indices"
            )

    def merge(self, other: ExemplarMiner) -> ExemplarMiner:
        """A miner holding the top-k over what both miners saw.

        Both must be built on the same layer (compared by name, so a miner
        rebuilt in another process merges), k, scales, neuron axis and
        groups, have seen images of the same size, and have seen disjoint
        sets of data-set indices (see ``start_index``, or pass indices).
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
        merged._indices = [*self._indices, *other._indices]
        merged.next_index = max(self.next_index, other.next_index)
        return merged

    def state_dict(self) -> dict[str, Any]:
        """What the miner holds, as tensors and plain data: the layer by name, no model.

        It pickles small (through ``torch.save``, torch.distributed's object
        collectives or Ray's object store); :meth:`from_state_dict` rebuilds
        the miner beside a model that has the layer.
        """
        return {
            "layer": self.layer_name,
            "k": self.k,
            "groups": [group.to_dict() for group in self.groups],
            "scales": None if self.scales is None else list(self.scales),
            "dim": self.dim,
            "call": self.call,
            "next_index": self.next_index,
            "seen": self.seen,
            "indices": _joined_indices(self._indices, "the miner"),
            "boxes": self._boxes,
            "state": None if self._state is None else [list(pair) for pair in self._state],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take over the top-k, indices and images seen of a miner built the same way."""
        for name in ("layer", "k", "scales", "dim", "call"):
            mine = getattr(self, "layer_name" if name == "layer" else name)
            theirs = state.get(name)
            theirs = tuple(theirs) if name == "scales" and theirs is not None else theirs
            if mine != theirs:
                raise ValueError(
                    f"state_dict was saved by a miner of another {name}: {theirs!r}, not {mine!r}"
                )
        if [g.to_dict() for g in self.groups] != list(state["groups"]):
            raise ValueError("state_dict was saved by a miner of other groups")
        self._state = None if state["state"] is None else [tuple(p) for p in state["state"]]
        self._boxes, self.seen = state["boxes"], int(state["seen"])
        self._indices = [torch.as_tensor(state["indices"], dtype=torch.long)]
        self.next_index = int(state["next_index"])

    @classmethod
    def from_state_dict(cls, model: nn.Module, state: Mapping[str, Any]) -> ExemplarMiner:
        """A miner of ``model`` holding what :meth:`state_dict` saved (in another process).

        Examples
        --------
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, _) = digits_cnn(), load_digits("test")
        >>> miner = ExemplarMiner(model, "relu3", k=3)
        >>> miner.update(x[:20], indices=range(100, 120))
        >>> again = ExemplarMiner.from_state_dict(digits_cnn(), miner.state_dict())
        >>> bool((again.result().neurons.indices >= 100).all()), again.ranges
        (True, [(100, 120)])
        """
        groups = [NeuronGroup.from_dict(g) for g in state["groups"]] or None
        miner = cls(
            model,
            state["layer"],
            state["k"],
            groups,
            state["scales"],
            dim=state["dim"],
            call=state.get("call"),
        )
        miner.load_state_dict(state)
        return miner

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
