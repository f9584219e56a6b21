"""Mining a data set for exemplars in one pass (:func:`mine_exemplars`, into a miner that
merges across shards: :func:`mine_into`), and the activations of given exemplars."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._model.capture import layer_outputs, probe_runs
from .._model.guards import guarded_call
from ..data import Data, batch_inputs, indexed_batches
from ..groups import (
    GroupsLike,
    Layer,
    layer_name,
    neuron_means,
    resolve_layer,
)
from .exemplars import ExemplarMiner, Exemplars, TopExemplars, _neuron_axis


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
    call: int | None = None,
) -> Exemplars:
    """Top-k exemplars of every neuron (and group) of a layer over a data set.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module or str
        The layer (module or dotted name).
    data : Tensor, Dataset, DataLoader or list of batches
        The examples (batches unpacked as in :func:`captum_groups.data.batch_inputs`:
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
    call : int, optional
        The run of a module that runs several times in one forward pass
        (see :class:`ExemplarMiner`); by default the groups' ``call``.

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
    miner = ExemplarMiner(model, layer, k, groups, scales, dim=dim, call=call)
    mine_into(miner, data, batch_size, progress)
    return miner.result()


def mine_into(
    miner: ExemplarMiner,
    data: Data,
    batch_size: int = 256,
    progress: bool = True,
    indices: Sequence[int] | None = None,
) -> None:
    """Stream ``data`` (or its examples at ``indices``) into ``miner``, each example under its
    data-set index (a ``DistributedSampler``'s shard under its own indices, without the
    sampler's padding)."""
    with guarded_call(miner.model, "mine_exemplars"):
        for ids, batch in tqdm(
            indexed_batches(data, batch_size, "data", indices),
            desc="mining exemplars",
            disable=not progress,
            leave=False,
        ):
            miner.update(batch_inputs(batch), ids)


def exemplar_activations(
    model: nn.Module,
    layer: Layer,
    exemplars: TopExemplars,
    data: Data,
    neurons: Sequence[int] | None = None,
    batch_size: int = 256,
    dim: int = 1,
    call: int | None = None,
) -> Tensor:
    """Each neuron's exemplars seen by the layer: (neurons, k, C) activation vectors.

    The input of :class:`ConceptClustering`: row ``i`` holds the layer's
    activation vector (spatial mean per channel) on each of neuron
    ``neurons[i]``'s top-k exemplars, as in NeurFlow. ``data`` is the data
    set the exemplars were mined from (a tensor, Dataset, DataLoader or list
    of batches, in the same order); ``dim`` is the layer's neuron axis and
    ``call`` the run of the layer (see :class:`ExemplarMiner`).

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
        probe_runs(model, inputs[:1], module, call)
        vectors = layer_outputs(model, inputs, module, batch_size, call=call)
    axis = _neuron_axis(module, vectors, dim, layer_name(model, module))
    return neuron_means(vectors, axis).view(len(rows), exemplars.values.shape[1], -1)
