"""The one rule for reading data: tensors, datasets and data loaders, batch by batch.

Every function of the package that takes ``data`` reads it with
:func:`iter_batches`, so they all accept the same things:

- a tensor of examples, batch first (cut into batches of ``batch_size``);
- a ``torch.utils.data.Dataset`` (read through a ``DataLoader`` of
  ``batch_size``, in order);
- a ``DataLoader`` or any other re-iterable of batches (a list of batches).

A batch is unpacked by :func:`batch_inputs`: a tensor is the inputs; a tuple
or list ``(x, y, ...)`` gives its first item; a dict gives the value under the
first key of :data:`INPUT_KEYS` it has. Labels, where a function needs them,
come from :func:`batch_labels` by the same rule.

Examples are numbered by their **data-set index** wherever there is one: a
tensor's row, a Dataset's index, and, for a DataLoader over a map-style
Dataset, the index its sampler gives (so a loader with ``sampler=[5, 3, 9]``
yields examples 5, 3 and 9, and a ``DistributedSampler`` shard its own
indices, the padding it repeats to even out the shards left out). Other
iterables (a list of batches, a loader over an IterableDataset) number their
examples by position. :func:`indexed_batches` reads examples with their
numbers, and :func:`examples_at` fetches examples by number (exemplar
montages, circuit thumbnails, the report): the one place that reads data by
index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
)

from ._validation.errors import ParameterError

__all__ = [
    "INPUT_KEYS",
    "LABEL_KEYS",
    "Data",
    "batch_inputs",
    "batch_labels",
    "check_reiterable",
    "examples_at",
    "indexed_batches",
    "iter_batches",
    "n_examples",
]

Data = Tensor | Dataset | Iterable[Any]
"""What ``data`` parameters accept: a tensor, a Dataset, a DataLoader or a list of batches."""

INPUT_KEYS = ("inputs", "input", "images", "image", "pixel_values", "x")
"""Keys under which a dict batch holds its inputs, in the order they are looked up."""

LABEL_KEYS = ("labels", "label", "targets", "target", "y")
"""Keys under which a dict batch holds its labels, in the order they are looked up."""


def _from_dict(batch: Mapping[str, Any], keys: tuple[str, ...], what: str, parameter: str) -> Any:
    for key in keys:
        if key in batch:
            return batch[key]
    raise ValueError(
        f"{parameter} yields dict batches without {what}: expected one of the keys {keys}, "
        f"got {sorted(map(str, batch))}"
    )


def batch_inputs(batch: Any, parameter: str = "data") -> Tensor:
    """The model inputs of one batch.

    Examples
    --------
    >>> x = torch.zeros(2, 3)
    >>> batch_inputs(x) is x, batch_inputs((x, torch.ones(2))) is x, batch_inputs({"image": x}) is x
    (True, True, True)
    """
    if isinstance(batch, Mapping):
        inputs = _from_dict(batch, INPUT_KEYS, "inputs", parameter)
    elif isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError(f"{parameter} yields an empty tuple or list as a batch")
        inputs = batch[0]
    else:
        inputs = batch
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"{parameter} must yield tensors, (inputs, labels) tuples or dicts of tensors; "
            f"got a batch whose inputs are {type(inputs).__name__}"
        )
    if inputs.device.type == "meta":
        raise ValueError(
            f"{parameter} holds tensors on the meta device, which have shapes but no values"
        )
    return inputs


def batch_labels(batch: Any, parameter: str = "data") -> Tensor:
    """The labels of one batch: the second item of a tuple or list, or a dict's label key.

    Examples
    --------
    >>> batch_labels((torch.zeros(2, 3), torch.tensor([0, 1])))
    tensor([0, 1])
    """
    if isinstance(batch, Mapping):
        labels = _from_dict(batch, LABEL_KEYS, "labels", parameter)
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        labels = batch[1]
    else:
        raise ValueError(
            f"{parameter} must yield (inputs, labels) batches or dicts with labels here; "
            f"got {type(batch).__name__} batches"
        )
    return torch.as_tensor(labels)


def _batches(data: Data, batch_size: int) -> Iterable[Any]:
    if isinstance(data, Tensor):
        return (data[start : start + batch_size] for start in range(0, len(data), batch_size))
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(
            f"data must be a tensor, a Dataset, a DataLoader or a list of batches, "
            f"got {type(data).__name__}"
        )
    return data


def iter_batches(
    data: Data, batch_size: int = 256, parameter: str = "data", labels: bool = False
) -> Iterator[Any]:
    """The input tensors of ``data``, batch by batch (with labels: ``(inputs, labels)`` pairs).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> x, y = torch.zeros(5, 3), torch.arange(5)
    >>> [len(b) for b in iter_batches(x, 2)]
    [2, 2, 1]
    >>> [len(b) for b in iter_batches(TensorDataset(x, y), 4)]
    [4, 1]
    >>> [l.tolist() for _, l in iter_batches([(x[:2], y[:2]), (x[2:], y[2:])], labels=True)]
    [[0, 1], [2, 3, 4]]
    """
    check_positive_batch(batch_size)
    if labels and isinstance(data, Tensor):
        raise ValueError(f"{parameter} must give labels here: pass (inputs, labels) batches")
    for batch in _batches(data, batch_size):
        inputs = batch_inputs(batch, parameter)
        yield (inputs, batch_labels(batch, parameter)) if labels else inputs


def _map_style(data: Data) -> Dataset | None:
    """The map-style Dataset examples are indexed in, if any (a DataLoader's dataset)."""
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, Dataset) and not isinstance(dataset, IterableDataset):
        return dataset
    return None


def _sampler_order(loader: DataLoader) -> list[list[int]]:
    """The data-set indices of a loader's batches, in its order, without the padding a
    ``DistributedSampler`` repeats to even out its shards."""
    sampler = loader.sampler
    if loader.batch_sampler is not None and not isinstance(sampler, DistributedSampler):
        return [list(map(int, batch)) for batch in loader.batch_sampler]
    indices = [int(i) for i in sampler]
    if isinstance(sampler, DistributedSampler) and not sampler.drop_last:
        # the shard is positions rank, rank + replicas, ... of the padded index list;
        # positions past the data set's end repeat its first indices
        size = len(sampler.dataset)  # type: ignore[arg-type]
        indices = [
            index
            for step, index in enumerate(indices)
            if sampler.rank + step * sampler.num_replicas < size
        ]
    width = loader.batch_size or 1
    batches = [indices[start : start + width] for start in range(0, len(indices), width)]
    if loader.drop_last and batches and len(batches[-1]) < width:
        batches.pop()
    return batches


def _loader_over(loader: DataLoader, order: list[list[int]]) -> DataLoader:
    """A loader reading ``loader``'s data set in the batches ``order`` gives (its collation,
    workers and memory pinning kept)."""
    return DataLoader(
        loader.dataset,
        batch_sampler=order,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        persistent_workers=loader.persistent_workers and loader.num_workers > 0,
    )


def indexed_batches(
    data: Data, batch_size: int = 256, parameter: str = "data", indices: Iterable[int] | None = None
) -> Iterator[tuple[Tensor, Any]]:
    """``(data-set indices, batch)`` pairs: all of ``data`` in its order, or the examples at
    ``indices`` in the order given (see the module docstring for the numbering).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.arange(6.0)[:, None]
    >>> loader = DataLoader(TensorDataset(x), batch_size=2, sampler=[5, 1, 4])
    >>> [(ids.tolist(), batch_inputs(b).flatten().tolist()) for ids, b in indexed_batches(loader)]
    [([5, 1], [5.0, 1.0]), ([4], [4.0])]
    >>> [ids.tolist() for ids, _ in indexed_batches(x, 4, indices=[3, 0])]
    [[3, 0]]
    """
    check_positive_batch(batch_size)
    dataset = _map_style(data)
    if indices is not None:
        wanted = [int(i) for i in indices]
        if isinstance(data, Tensor):
            for start in range(0, len(wanted), batch_size):
                ids = torch.as_tensor(wanted[start : start + batch_size], dtype=torch.long)
                yield ids, data[ids]
            return
        if dataset is not None:
            order = [wanted[s : s + batch_size] for s in range(0, len(wanted), batch_size)]
            loader = data if isinstance(data, DataLoader) else DataLoader(dataset)
            for ids, batch in zip(order, _loader_over(loader, order), strict=True):
                yield torch.as_tensor(ids, dtype=torch.long), batch
            return
        needed = set(wanted)
        for ids, batch in indexed_batches(data, batch_size, parameter):
            keep = torch.tensor([int(i) in needed for i in ids], dtype=torch.bool)
            if keep.any():
                yield ids[keep], _select(batch, keep)
        return
    if isinstance(data, DataLoader) and dataset is not None:
        order = _sampler_order(data)
        for ids, batch in zip(order, _loader_over(data, order), strict=True):
            yield torch.as_tensor(ids, dtype=torch.long), batch
        return
    first = 0
    for batch in _batches(data, batch_size):
        count = len(batch_inputs(batch, parameter))
        yield torch.arange(first, first + count), batch
        first += count


def _select(batch: Any, keep: Tensor) -> Any:
    """The rows ``keep`` of a batch (a tensor, a tuple or list of tensors, or a dict)."""
    if isinstance(batch, Tensor):
        return batch[keep]
    if isinstance(batch, Mapping):
        return {k: v[keep] if isinstance(v, Tensor) else v for k, v in batch.items()}
    return type(batch)(v[keep] if isinstance(v, Tensor) else v for v in batch)


def check_positive_batch(batch_size: object) -> None:
    """``batch_size`` must be a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", f"batch_size must be a positive int, got {batch_size!r}")


def check_reiterable(data: Data, parameter: str = "data") -> None:
    """Refuse data that cannot be read the same way twice (one-shot iterators, shuffling loaders).

    Functions that read the data in several passes and refer to examples by
    their position call this first.

    Examples
    --------
    >>> import torch
    >>> check_reiterable(torch.zeros(4, 2))  # a tensor reads the same every time
    >>> check_reiterable(iter([torch.zeros(4, 2)]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: data is a one-shot iterator, but it is read more than once; ...
    """
    if isinstance(data, (Tensor, Dataset)):
        return
    if isinstance(data, Iterator):
        raise TypeError(
            f"{parameter} is a one-shot iterator, but it is read more than once; pass a tensor, "
            f"a Dataset, a DataLoader or a list of batches"
        )
    if isinstance(data, DataLoader) and isinstance(data.sampler, RandomSampler):
        raise ValueError(
            f"{parameter} is a shuffling DataLoader, but examples are referred to by their "
            f"position across passes; use shuffle=False"
        )


def examples_at(
    data: Data, indices: Iterable[int] | Tensor, parameter: str = "data", batch_size: int = 256
) -> Tensor:
    """The inputs of the examples numbered ``indices`` (see the module docstring), in the
    order given.

    A tensor is indexed; a map-style Dataset, or a DataLoader's, is read at
    those indices (through the loader's collation); anything else (a list of
    batches) is read once, batch by batch, keeping only the examples asked for.

    Examples
    --------
    >>> x = torch.arange(10.0).reshape(5, 2)
    >>> examples_at([(x[:3], torch.zeros(3)), (x[3:], torch.ones(2))], [4, 0]).tolist()
    [[8.0, 9.0], [0.0, 1.0]]
    """
    if isinstance(indices, Tensor):
        indices = indices.flatten().tolist()
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("indices is empty; ask for at least one example")
    total = n_examples(data)
    if min(wanted) < 0 or (total is not None and max(wanted) >= total):
        bad = min(wanted) if min(wanted) < 0 else max(wanted)
        raise ParameterError(
            parameter,
            f"{parameter} has {total} examples, but example {bad} is asked for; give the data "
            f"the indices refer to",
        )
    unique = list(dict.fromkeys(wanted))
    found: dict[int, Tensor] = {}
    if isinstance(data, Tensor) or _map_style(data) is not None:
        for ids, batch in indexed_batches(data, batch_size, parameter, indices=unique):
            found.update(zip(ids.tolist(), batch_inputs(batch, parameter), strict=True))
        return torch.stack([found[i] for i in wanted])
    check_reiterable(data, parameter)
    needed, seen = set(unique), 0
    for ids, batch in indexed_batches(data, batch_size, parameter):
        seen += len(ids)
        inputs = batch_inputs(batch, parameter)
        found.update((i, row) for i, row in zip(ids.tolist(), inputs, strict=True) if i in needed)
        if len(found) == len(needed):
            break
    missing = needed - set(found)
    if missing:
        raise ParameterError(
            parameter,
            f"{parameter} has {seen} examples, but example {max(missing)} is asked for; give "
            f"the data the indices refer to",
        )
    return torch.stack([found[i] for i in wanted])


def n_examples(data: Data) -> int | None:
    """How many examples ``data`` holds, where that is known without reading it.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> n_examples(torch.zeros(5, 3)), n_examples(DataLoader(TensorDataset(torch.zeros(7, 3)), 2))
    (5, 7)
    >>> n_examples(iter([torch.zeros(2, 3)])) is None  # unknown without reading it
    True
    """
    if isinstance(data, Tensor):
        return len(data)
    if isinstance(data, DataLoader):
        dataset = data.dataset
        return len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return len(data)  # type: ignore[arg-type]
    return None
