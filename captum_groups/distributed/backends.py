"""Where work runs: one process, the ranks of a torch.distributed job, or a Ray cluster.

Every backend does the same three things, so the jobs built on them (the
atlas, exemplar mining) are written once:

- ``route(batch_size)``: each image's predicted class, data-parallel, as a
  :class:`~captum_groups.circuits.ClassRouting` every worker knows;
- ``map(work, items, weights)``: ``work(model, data, item)`` for every item,
  spread over the workers, every result returned to the main process;
- ``close()``: release the workers.

Workers build the model and the data themselves, once, from the factories
they are given (:class:`Workload`): a model is never pickled with the work.

- :class:`LocalBackend` runs everything in this process.
- :class:`TorchBackend` is one rank of a ``torchrun`` job: shards are fixed
  (every rank runs the same program), items are spread over the ranks
  balanced by their weights (the longest first, each to the least loaded
  rank), and results are exchanged with torch.distributed's object
  collectives (gloo on the CPU, NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``).
- :class:`RayBackend` starts one actor per worker on a Ray cluster
  (``ray.init(address=...)``), each holding its model and data; items are
  handed out dynamically, the heaviest first (the ``[ray]`` extra).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._validation.errors import ParameterError
from ..circuits.routing import ClassRouting, route_classes, shard_groups
from ..data import Data, n_examples

__all__ = [
    "Backend",
    "LocalBackend",
    "RayBackend",
    "TorchBackend",
    "Workload",
    "balanced",
    "check_workload",
    "make_backend",
]

Work = Callable[[nn.Module, Data, Any], Any]
"""``work(model, data, item)``: one item's work on a worker's model and data."""


@dataclass(frozen=True)
class Workload:
    """How a worker gets its model and data: objects (this process only) or factories.

    Attributes
    ----------
    model : nn.Module or callable returning one
    data : data (tensor, Dataset, DataLoader) or callable returning it
    device : str or None
        Where the model runs; ``"cuda"`` means each rank's ``cuda:LOCAL_RANK``.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> workload = Workload(digits_cnn, lambda: load_digits("test")[0], device="cpu")
    >>> model, data = workload.load()
    >>> type(model).__name__, tuple(data.shape)
    ('DigitsCNN', (450, 1, 8, 8))
    """

    model: nn.Module | Callable[[], nn.Module]
    data: Data | Callable[[], Data]
    device: str | None = None

    def load(self, local_rank: int = 0) -> tuple[nn.Module, Data]:
        """The model (on its device, in eval mode if built here) and the data."""
        model = self.model() if _is_factory(self.model) else self.model
        data = self.data() if _is_factory(self.data) else self.data
        if not isinstance(model, nn.Module):
            raise ParameterError(
                "model", f"model must be an nn.Module or a factory of one, got {type(model)}"
            )
        device = _device(self.device, local_rank)
        return (model.to(device) if device is not None else model), data


def _is_factory(value: object) -> bool:
    return (
        callable(value)
        and not isinstance(value, (nn.Module, torch.Tensor))
        and not hasattr(value, "__getitem__")
    )


def _device(spec: str | None, local_rank: int) -> torch.device | None:
    if spec is None:
        return None
    device = torch.device(spec)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


def balanced(weights: Sequence[float], workers: int) -> list[list[int]]:
    """Items spread over workers by weight: heaviest first, each to the least loaded worker.

    Examples
    --------
    >>> balanced([5, 1, 4, 2, 3], 2)
    [[0, 3, 1], [2, 4]]
    """
    loads, shares = [0.0] * workers, [[] for _ in range(workers)]
    # Graham's longest-processing-time rule (within 4/3 of the best makespan). Ties are
    # broken by index, never by chance: every rank of a torchrun job computes the same
    # shares on its own, without talking to the others.
    for item in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        lightest = min(range(workers), key=lambda w: (loads[w], w))
        shares[lightest].append(item)
        loads[lightest] += weights[item]
    return shares


class Backend(ABC):
    """The interface every backend implements (see the module docstring).

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> backend = make_backend("local", Workload(digits_cnn(), load_digits("test")[0]))
    >>> def count(model, data, item):  # the work: one item, on a worker's model and data
    ...     return len(data[item])
    >>> isinstance(backend, Backend), backend.map(count, [slice(0, 5), slice(5, 7)], [1, 1])
    (True, [5, 2])
    >>> backend.close()
    """

    name = "backend"
    is_main = True
    workers = 1

    @abstractmethod
    def route(self, batch_size: int, progress: bool) -> ClassRouting:
        """Each image's predicted class, routed data-parallel and merged."""

    @abstractmethod
    def map(
        self,
        work: Work,
        items: Sequence[Any],
        weights: Sequence[float],
        on_result: Callable[[Any], None] | None = None,
        probe: Callable[[], int] | None = None,
    ) -> list[Any]:
        """``work(model, data, item)`` for every item, across the workers; the results in
        item order (on the main process). ``on_result`` is called as results come;
        ``probe`` counts the results finished by every worker (for one progress display
        where results come back only at the end)."""

    @abstractmethod
    def close(self) -> None:
        """Release the workers (and what they hold)."""


class LocalBackend(Backend):
    """Everything in this process.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> backend = LocalBackend(Workload(digits_cnn(), load_digits("test")[0]))
    >>> def logits_shape(model, data, item):
    ...     return tuple(model(data[item]).shape)
    >>> backend.map(logits_shape, [slice(0, 2), slice(2, 5)], [2, 3])
    [(2, 10), (3, 10)]
    >>> backend.close()
    """

    name = "local"

    def __init__(self, workload: Workload) -> None:
        self.model, self.data = workload.load()

    def route(self, batch_size: int, progress: bool) -> ClassRouting:
        return route_classes(self.model, self.data, batch_size, progress=progress)

    def map(self, work, items, weights, on_result=None, probe=None):
        results = []
        for item in items:
            results.append(work(self.model, self.data, item))
            if on_result is not None:
                on_result(results[-1])
        return results

    def close(self) -> None:
        self.model = self.data = None  # the caller's objects: only this reference goes


class TorchBackend(Backend):
    """One rank of a torch.distributed job (``torchrun``); joins the process group from the
    environment when the program has not.

    Examples
    --------
    Run under ``torchrun`` (one process per rank), e.g. a script holding

    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> workload = Workload(digits_cnn, lambda: load_digits("test")[0])
    >>> make_backend(None, workload).__class__.__name__  # torchrun sets RANK: TorchBackend
    'LocalBackend'

    started as ``torchrun --nproc-per-node 2 script.py``; each rank then builds its
    share and :meth:`TorchBackend.gather` collects them.
    """

    name = "torch"

    def __init__(self, workload: Workload) -> None:
        import torch.distributed as dist

        self.dist = dist
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = _device(workload.device, local_rank)
        if not dist.is_initialized():
            if "WORLD_SIZE" not in os.environ:
                raise ParameterError(
                    "backend",
                    "backend='torch' runs under torchrun (or with torch.distributed initialised); "
                    "launch with torchrun --nproc_per_node=N, or use backend='local'",
                )
            cuda = device is not None and device.type == "cuda"
            if cuda:
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if cuda else "gloo")
            self._owns_group = True
        else:
            self._owns_group = False
        self.rank, self.workers = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.model, self.data = workload.load(local_rank)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        gathered: list[Any] = [None] * self.workers
        self.dist.all_gather_object(gathered, value)
        return gathered

    def route(self, batch_size: int, progress: bool) -> ClassRouting:
        total = n_examples(self.data)
        if total is None:
            raise ParameterError("data", "data must say how many images it holds to be sharded")
        groups = shard_groups(total, batch_size, self.rank, self.workers)
        mine = route_classes(self.model, self.data, batch_size, groups, progress and self.is_main)
        routing = ClassRouting()
        for state in self.gather(mine.state_dict()):
            routing = routing.merge(ClassRouting.from_state_dict(state))
        return routing

    def map(self, work, items, weights, on_result=None, probe=None):
        share = balanced(weights, self.workers)[self.rank]
        stop = threading.Event()
        watcher = None
        if self.is_main and probe is not None and on_result is not None:
            watcher = threading.Thread(target=_watch, args=(probe, on_result, stop), daemon=True)
            watcher.start()
        try:
            mine = [(index, work(self.model, self.data, items[index])) for index in share]
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
        results: list[Any] = [None] * len(items)
        for pairs in self.gather(mine):
            for index, result in pairs:
                results[index] = result
        return results

    def close(self) -> None:
        if self._owns_group and self.dist.is_initialized():
            self.dist.barrier()
            self.dist.destroy_process_group()


def _watch(probe: Callable[[], int], on_result: Callable[[Any], None], stop: threading.Event):
    """Report progress made by every rank (counted by ``probe``) while this rank works."""
    reported = 0
    while not stop.is_set():
        done = probe()
        for _ in range(done - reported):
            on_result(None)
        reported = max(reported, done)
        stop.wait(0.5)
    done = probe()
    for _ in range(done - reported):
        on_result(None)


class RayBackend(Backend):
    """Actors on a Ray cluster, each with its own model and data (built from factories).

    Examples
    --------
    Factories, not objects, travel to the workers (each builds its own model and data):

    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> def digits():
    ...     return load_digits("test")[0]
    >>> workload = Workload(digits_cnn, digits)  # what RayBackend(workload, workers=2) ships
    >>> callable(workload.model), callable(workload.data)
    (True, True)
    """

    name = "ray"

    def __init__(
        self, workload: Workload, address: str | None = None, workers: int | None = None
    ) -> None:
        ray = _import_ray()
        check_workload("ray", workload)
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.workers = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_Worker)
        self.actors = [actor.remote(workload) for _ in range(self.workers)]
        ray.get([worker.size.remote() for worker in self.actors])  # every worker loaded

    def route(self, batch_size: int, progress: bool) -> ClassRouting:
        total = self.ray.get(self.actors[0].size.remote())
        states = self.ray.get(
            [
                actor.route.remote(batch_size, shard_groups(total, batch_size, rank, self.workers))
                for rank, actor in enumerate(self.actors)
            ]
        )
        routing = ClassRouting()
        for state in states:
            routing = routing.merge(ClassRouting.from_state_dict(state))
        return routing

    def map(self, work, items, weights, on_result=None, probe=None):
        from ray.util import ActorPool

        order = sorted(range(len(items)), key=lambda i: (-weights[i], i))
        pool = ActorPool(self.actors)
        results: list[Any] = [None] * len(items)
        pairs = pool.map_unordered(
            lambda actor, index: actor.run.remote(work, index, items[index]), order
        )
        for index, result in pairs:
            results[index] = result
            if on_result is not None:
                on_result(result)
        return results

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


class _Worker:
    """A Ray actor: one model and one data set, built once, serving many items."""

    def __init__(self, workload: Workload) -> None:
        torch.set_num_threads(1)
        self.model, self.data = workload.load()

    def size(self) -> int | None:
        return n_examples(self.data)

    def route(self, batch_size: int, groups: list[int]) -> dict:
        return route_classes(self.model, self.data, batch_size, groups, progress=False).state_dict()

    def run(self, work: Work, index: int, item: Any) -> tuple[int, Any]:
        return index, work(self.model, self.data, item)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs Ray: pip install 'captum-groups[ray]'") from None
    return ray


def check_workload(backend: str | None, workload: Workload) -> None:
    """What a backend needs of the workload, checked before any backend starts: a known
    backend, and for Ray factories of the model and data (each worker builds its own)."""
    if backend not in (None, "local", "torch", "ray"):
        raise ParameterError(
            "backend", f"backend must be 'local', 'torch' or 'ray', got {backend!r}"
        )
    if backend != "ray":
        return
    for name in ("model", "data"):
        if not _is_factory(getattr(workload, name)):
            raise ParameterError(
                name,
                f"backend='ray' builds the {name} on each worker: pass a function that "
                f"returns it (e.g. lambda: make_{name}()), not the object itself",
            )


def make_backend(
    backend: str | None,
    workload: Workload,
    address: str | None = None,
    workers: int | None = None,
) -> Backend:
    """The backend by name; None: ``"torch"`` under torchrun, else ``"local"``.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> backend = make_backend("local", Workload(digits_cnn(), load_digits("test")[0]))
    >>> type(backend).__name__
    'LocalBackend'
    >>> make_backend("spark", Workload(digits_cnn(), load_digits("test")[0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: backend ...
    """
    if backend is None:
        backend = "torch" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "local"
    if backend == "local":
        return LocalBackend(workload)
    if backend == "torch":
        return TorchBackend(workload)
    check_workload(backend, workload)
    return RayBackend(workload, address, workers)
