"""Top-k exemplars per neuron and per group, mined in one streaming, mergeable pass.

A neuron's *concept* is the set of inputs (or NeurFlow crops of inputs) that
activate it most (Cao et al., ICLR 2025): its top-k exemplars. A neuron's
activation is its spatial mean; a group's is its own reduction.
:class:`ExemplarMiner` keeps only the running top-k (memory does not grow
with the data set), and two miners that saw different shards merge into
exactly what one pass over both would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._data import Data, iter_batches
from .._hooks import layer_outputs, preserve_buffers, run_to_layer
from ..groups import GroupSet, Layer, NeuronGroup, resolve_layer
from .crops import crop_and_resize, crop_boxes


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

    def inputs(self, data: Tensor, unit: int) -> Tensor:
        """The exemplar inputs of one unit, cropped and resized like the model saw them.

        Parameters
        ----------
        data : Tensor
            The data set the exemplars were mined from, (N, C, H, W).
        unit : int
            Row of the unit.
        """
        images = data[self.indices[unit]]
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
        Data set index of the first example this miner will see (for shards).

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
        groups: GroupSet | Sequence[NeuronGroup] | None = None,
        scales: Sequence[float] | None = None,
        start_index: int = 0,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.model = model
        self.layer = resolve_layer(model, layer)
        self.k = k
        self.groups = list(groups) if groups is not None else []
        for group in self.groups:
            if group.resolve(model) is not self.layer:
                raise ValueError(f"group {group!r} does not belong to the mined layer")
        self.scales = tuple(scales) if scales is not None else None
        self.next_index = start_index
        self.seen = 0
        self._state: list[tuple[Tensor, Tensor]] | None = None
        self._boxes: Tensor | None = None

    def _boxes_for(self, inputs: Tensor) -> Tensor:
        height, width = inputs.shape[-2:]
        boxes = crop_boxes(height, width, self.scales) if self.scales else None
        if boxes is None:
            boxes = torch.tensor([[0, 0, height, width]])
        if self._boxes is not None and not torch.equal(boxes, self._boxes):
            raise ValueError("all inputs must have the same image size to mine crops")
        self._boxes = boxes
        return boxes

    def update(self, inputs: Tensor) -> None:
        """Add a batch of examples (the next ones of the data set)."""
        if not isinstance(inputs, Tensor) or inputs.ndim < 2:
            raise TypeError("inputs must be a batched tensor")
        boxes = self._boxes_for(inputs) if inputs.ndim == 4 else torch.tensor([[0, 0, 0, 0]])
        candidates = crop_and_resize(inputs, boxes) if self.scales else inputs
        with torch.no_grad(), preserve_buffers(self.model):
            (output,) = run_to_layer(self.model, candidates, self.layer)[:1]
        neuron_scores = output.flatten(2).mean(2) if output.ndim > 2 else output
        scores = [neuron_scores.T]
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
        self.next_index += inputs.shape[0]
        self.seen += candidates.shape[0]

    def merge(self, other: ExemplarMiner) -> ExemplarMiner:
        """A miner holding the top-k over what both miners saw."""
        if self._state is None or other._state is None:
            return other if self._state is None else self
        if (self.k, self.scales, len(self.groups)) != (other.k, other.scales, len(other.groups)):
            raise ValueError("only miners with the same k, scales and groups can be merged")
        merged = ExemplarMiner(self.model, self.layer, self.k, self.groups, self.scales)
        merged._state = [
            _top_k(torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1), self.k)
            for a, b in zip(self._state, other._state, strict=True)
        ]
        merged._boxes = self._boxes
        merged.seen = self.seen + other.seen
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
    groups: GroupSet | Sequence[NeuronGroup] | None = None,
    scales: Sequence[float] | None = None,
    batch_size: int = 256,
    progress: bool = True,
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
    miner = ExemplarMiner(model, layer, k, groups, scales)
    for batch in tqdm(
        iter_batches(data, batch_size), desc="mining exemplars", disable=not progress, leave=False
    ):
        miner.update(batch)
    return miner.result()


def exemplar_activations(
    model: nn.Module,
    layer: Layer,
    exemplars: TopExemplars,
    data: Tensor,
    neurons: Sequence[int] | None = None,
    batch_size: int = 256,
) -> Tensor:
    """Each neuron's exemplars seen by the layer: (neurons, k, C) activation vectors.

    The input of :class:`ConceptClustering`: row ``i`` holds the layer's
    activation vector (spatial mean per channel) on each of neuron
    ``neurons[i]``'s top-k exemplars, as in NeurFlow.

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
    inputs = torch.cat([exemplars.inputs(data, row) for row in rows])
    vectors = layer_outputs(model, inputs, module, batch_size)
    vectors = vectors.flatten(2).mean(2) if vectors.ndim > 2 else vectors
    return vectors.view(len(rows), exemplars.values.shape[1], -1)
