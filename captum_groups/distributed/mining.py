"""A layer's exemplars over a whole data set, mined data-parallel and merged on every rank."""

from __future__ import annotations

from collections.abc import Sequence

import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .._validation.errors import ParameterError
from ..data import Data, n_examples
from ..discovery.exemplars import ExemplarMiner, Exemplars
from ..discovery.mining import mine_into
from ..groups import GroupsLike, Layer

__all__ = ["mine_exemplars"]


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
    """:func:`captum_groups.discovery.mine_exemplars`, data-parallel under torch.distributed.

    Each rank mines its shard, and the miners' states (tensors and plain
    data, :meth:`~captum_groups.discovery.ExemplarMiner.state_dict`) are
    exchanged and merged, so every rank returns the exemplars of the whole
    data set: the same indices, boxes and values as one process mining it
    all. A DataLoader with a ``DistributedSampler`` is the rank's shard (the
    sampler's padding is left out); other data are sharded here, every
    world-th example. Without an initialised process group this is the
    single-process function.

    Examples
    --------
    Under ``torchrun --nproc_per_node=2 script.py``, with a process group::

        sampler = DistributedSampler(dataset, shuffle=False)
        loader = DataLoader(dataset, batch_size=64, sampler=sampler)
        found = mine_exemplars(model, "layer4.1", loader, k=50, scales=NEURFLOW_SCALES)
    """
    miner = ExemplarMiner(model, layer, k, groups, scales, dim=dim, call=call)
    if not (dist.is_available() and dist.is_initialized()):
        mine_into(miner, data, batch_size, progress)
        return miner.result()
    rank, world = dist.get_rank(), dist.get_world_size()
    sharded = isinstance(data, DataLoader) and isinstance(data.sampler, DistributedSampler)
    indices = None
    if not sharded:
        total = n_examples(data)
        if total is None:
            raise ParameterError("data", "data must say how many examples it holds to be sharded")
        indices = list(range(rank, total, world))
    mine_into(miner, data, batch_size, progress and rank == 0, indices)
    states: list[dict | None] = [None] * world
    dist.all_gather_object(states, miner.state_dict())
    merged = ExemplarMiner.from_state_dict(model, states[0])
    for state in states[1:]:
        merged = merged.merge(ExemplarMiner.from_state_dict(model, state))
    return merged.result()
