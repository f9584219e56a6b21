"""Class routing: which class the model predicts for each image, streamed and mergeable.

A circuit of a class is built from the images the model predicts as that
class (NeurFlow). :func:`route_classes` runs the model once over the data and
records each image's predicted class under its data-set index; a
:class:`ClassRouting` from several shards merges into the routing of the
whole data set, and :func:`~captum_groups.build_circuits` given one reads
each class's images only, without predicting again.

Predictions are made in fixed groups of ``batch_size`` consecutive data-set
indices (``[0, B)``, ``[B, 2B)``, ...), the groups a single-process build
predicts in, so a shard's predictions are the same numbers whichever process
makes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._model.guards import guarded_call, preserve_buffers
from .._validation.errors import ParameterError
from ..data import Data, batch_inputs, indexed_batches, n_examples
from ._passes import model_device_dtype

__all__ = ["ClassRouting", "check_routing", "prediction_groups", "route_classes", "shard_groups"]


class ClassRouting:
    """Each image's predicted class by data-set index; mergeable across disjoint shards.

    Examples
    --------
    >>> first, second = ClassRouting(), ClassRouting()
    >>> first.update(torch.tensor([0, 1]), torch.tensor([3, 5]))
    >>> second.update(torch.tensor([2]), torch.tensor([3]))
    >>> merged = first.merge(second)
    >>> merged.images_of(3), merged.counts()
    ([0, 2], Counter({3: 2, 5: 1}))
    """

    def __init__(self) -> None:
        self._indices: list[Tensor] = []
        self._classes: list[Tensor] = []

    def update(self, indices: Tensor, classes: Tensor) -> None:
        """Record the predicted ``classes`` of the images at data-set ``indices``."""
        indices = torch.as_tensor(indices, dtype=torch.long).flatten().cpu()
        classes = torch.as_tensor(classes, dtype=torch.long).flatten().cpu()
        if len(indices) != len(classes):
            raise ValueError(f"got {len(indices)} indices for {len(classes)} classes")
        self._indices.append(indices)
        self._classes.append(classes)

    def _joined(self) -> tuple[Tensor, Tensor]:
        """All records sorted by index (each index once)."""
        if not self._indices:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        indices, classes = torch.cat(self._indices), torch.cat(self._classes)
        order = indices.argsort(stable=True)
        indices, classes = indices[order], classes[order]
        if len(indices) > 1 and (indices[1:] == indices[:-1]).any():
            twice = int(indices[1:][indices[1:] == indices[:-1]][0])
            raise ValueError(f"the routing records data-set index {twice} more than once")
        self._indices, self._classes = [indices], [classes]
        return indices, classes

    def counts(self) -> Counter[int]:
        """How many images the model predicts as each class."""
        return Counter(self._joined()[1].tolist())

    def images_of(self, target: int) -> list[int]:
        """The data-set indices of the images predicted as ``target``, in index order."""
        indices, classes = self._joined()
        return indices[classes == target].tolist()

    def __len__(self) -> int:
        return len(self._joined()[0])

    def merge(self, other: ClassRouting) -> ClassRouting:
        """The routing of both shards, which must not share an index."""
        if not isinstance(other, ClassRouting):
            raise TypeError(f"other must be a ClassRouting, got {type(other).__name__}")
        (mine, my_classes), (theirs, their_classes) = self._joined(), other._joined()
        merged = ClassRouting()
        merged._indices, merged._classes = [mine, theirs], [my_classes, their_classes]
        merged._joined()
        return merged

    def state_dict(self) -> dict[str, Tensor]:
        """Two tensors: the data-set indices and their predicted classes."""
        indices, classes = self._joined()
        return {"indices": indices, "classes": classes}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take over the records of :meth:`state_dict`."""
        self._indices = [torch.as_tensor(state["indices"], dtype=torch.long)]
        self._classes = [torch.as_tensor(state["classes"], dtype=torch.long)]
        self._joined()

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ClassRouting:
        """A routing holding what :meth:`state_dict` saved."""
        routing = cls()
        routing.load_state_dict(state)
        return routing


def prediction_groups(total: int, batch_size: int) -> list[list[int]]:
    """The fixed groups of consecutive data-set indices predictions are made in.

    Examples
    --------
    >>> prediction_groups(5, 2)
    [[0, 1], [2, 3], [4]]
    """
    return [
        list(range(start, min(start + batch_size, total))) for start in range(0, total, batch_size)
    ]


def route_classes(
    model: nn.Module,
    data: Data,
    batch_size: int = 256,
    groups: Sequence[int] | None = None,
    progress: bool = True,
) -> ClassRouting:
    """Each image's predicted class, in the fixed groups of ``prediction_groups``.

    Parameters
    ----------
    model : nn.Module
        The classifier (outputs (N, classes)).
    data : Tensor, Dataset or DataLoader over a map-style Dataset
        The images, read by data-set index.
    batch_size : int
        Images per prediction group (the build's ``batch_size``).
    groups : sequence of int, optional
        Which prediction groups to route (a shard); all by default.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ClassRouting

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> routing = route_classes(model, x, progress=False)
    >>> len(routing), routing.counts()[3] == int((model(x).argmax(1) == 3).sum())
    (450, True)
    """
    total = n_examples(data)
    if total is None:
        raise ParameterError(
            "data",
            "data must say how many images it holds (a tensor, a Dataset or a DataLoader over "
            "one) to be routed by index",
        )
    every = prediction_groups(total, batch_size)
    chosen = sorted(range(len(every)) if groups is None else groups)
    # the chosen groups in order: all but the last group are full, so batches of
    # batch_size over their indices are exactly the groups
    indices = [index for group in chosen for index in every[group]]
    device, dtype = model_device_dtype(model)
    routing = ClassRouting()
    with (
        guarded_call(model, "route_classes"),
        torch.no_grad(),
        preserve_buffers(model),
        tqdm(total=len(indices), desc="routing", disable=not progress, leave=False) as bar,
    ):
        for ids, batch in indexed_batches(data, batch_size, "data", indices):
            images = batch_inputs(batch).to(device, dtype)
            routing.update(ids, model(images).argmax(1))
            bar.update(len(ids))
    return routing


def shard_groups(total: int, batch_size: int, rank: int, world: int) -> list[int]:
    """The prediction groups shard ``rank`` of ``world`` routes: every world-th one."""
    return list(range(rank, len(prediction_groups(total, batch_size)), world))


def check_routing(routing: object, targets: Iterable[object]) -> ClassRouting | None:
    """``routing`` must be a ClassRouting (or None) that knows some images."""
    if routing is None:
        return None
    if not isinstance(routing, ClassRouting):
        raise ParameterError(
            "routing", f"routing must be a ClassRouting, got {type(routing).__name__}"
        )
    if not len(routing):
        raise ParameterError("routing", "routing records no image")
    return routing
