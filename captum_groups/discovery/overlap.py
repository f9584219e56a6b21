"""NeurFlow's adaptive tau: how many core neurons to keep for each target, from how the
overlap of its top-k exemplars falls as its ranked core neurons are masked one by one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, fx

from .._model.subnetwork import fold_batchnorm
from .targets import Target, TargetValues, rows_per_pass


class TopKOverlap:
    """NeurFlow's adaptive tau, accumulated over batches of the pool.

    For each target, the ranked core neurons are masked one more at a time
    (1, 2, ... tau of them) and the target's top-k set among all pool inputs
    is found again; its overlap with the unmasked top-k set falls as more
    neurons are masked. :meth:`sizes` keeps, per target, the fewest neurons
    whose masking brings the overlap below its minimum plus a tolerance.
    Only running top-k lists are kept, so the pool can be streamed.

    Parameters
    ----------
    between : callable
        Lower-layer output -> the upper output the targets read.
    targets : sequence of int or NeuronGroup
        The targets.
    ranked : Tensor
        (T, tau) ranked lower neurons per target.
    k : sequence of int
        Top-set size per target (its number of exemplars).
    """

    def __init__(
        self,
        between: Callable[[Tensor], Tensor],
        targets: Sequence[Target],
        ranked: Tensor,
        k: Sequence[int],
    ) -> None:
        self.between = fold_batchnorm(between) if isinstance(between, fx.GraphModule) else between
        self.values = TargetValues(targets)
        self.ranked, self.k = ranked, list(k)
        self._tops: list[list[tuple[Tensor, Tensor]] | None] = [None] * len(targets)
        self.seen = 0

    def add(self, pool_activations: Tensor) -> None:
        """The next pool inputs' lower-layer activations."""
        ids = torch.arange(self.seen, self.seen + len(pool_activations))
        n_sizes = self.ranked.shape[1] + 1
        per_pass = max(1, rows_per_pass(pool_activations, None) // n_sizes)
        with torch.no_grad():
            for target in range(len(self.values.targets)):
                values = torch.cat(
                    [
                        self._masked_values(target, pool_activations[s : s + per_pass])
                        for s in range(0, len(pool_activations), per_pass)
                    ],
                    1,
                ).cpu()
                self._merge(target, values, ids)
        self.seen += len(pool_activations)

    def _masked_values(self, target: int, activations: Tensor) -> Tensor:
        """(sizes, N) target values with the first 0, 1, ..., tau ranked neurons masked."""
        n_sizes = self.ranked.shape[1] + 1
        mask = torch.ones(n_sizes, activations.shape[1], dtype=activations.dtype)
        for size in range(1, n_sizes):
            mask[size, self.ranked[target, :size]] = 0
        mask = mask.view(n_sizes, 1, -1, *[1] * (activations.ndim - 2)).to(activations.device)
        masked = (activations.unsqueeze(0) * mask).flatten(0, 1)
        owner = torch.full((len(masked),), target, dtype=torch.long)
        return self.values(self.between(masked), owner).view(n_sizes, -1)

    def _merge(self, target: int, values: Tensor, ids: Tensor) -> None:
        k = self.k[target]
        merged = []
        for size, row in enumerate(values):
            candidates, candidate_ids = row, ids
            previous = self._tops[target]
            if previous is not None:
                candidates = torch.cat([previous[size][0], row])
                candidate_ids = torch.cat([previous[size][1], ids])
            top = candidates.topk(min(k, len(candidates))).indices
            merged.append((candidates[top], candidate_ids[top]))
        self._tops[target] = merged

    def sizes(self, tolerance: float) -> list[int]:
        """The adaptive number of core neurons of each target."""
        sizes = []
        for target, tops in enumerate(self._tops):
            k = self.k[target]
            if tops is None or self.seen < k:
                raise ValueError(f"pool has {self.seen} inputs, fewer than the {k} exemplars")
            reference = set(tops[0][1].tolist())
            overlaps = [len(reference & set(ids.tolist())) / k for _, ids in tops[1:]]
            floor = min(overlaps)
            chosen = (s for s, o in enumerate(overlaps, 1) if o < floor + tolerance)
            sizes.append(next(chosen, len(overlaps)))
        return sizes
