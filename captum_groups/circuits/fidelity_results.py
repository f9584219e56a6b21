"""The results of the fidelity measures (:mod:`captum_groups.circuits.fidelity`): the
numbers, their confidence intervals, and a ``plot()`` each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .._io.plain_text import plain_text

__all__ = [
    "BOOTSTRAP",
    "EdgeFidelityResult",
    "FaithfulnessCurve",
    "FidelityReport",
    "FidelityResult",
    "mean_interval",
]


BOOTSTRAP = 2000
"""Resamples of the bootstrap confidence intervals."""


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """95% confidence interval of the mean of ``values``: the bootstrap percentile interval
    (:data:`BOOTSTRAP` resamples, seeded). It lies within the values, so an interval of
    accuracies stays inside [0, 1] (a normal approximation can leave it).

    Examples
    --------
    >>> low, high = mean_interval(np.array([0.1, 0.2, 0.3, 0.4]))
    >>> 0.1 <= low < 0.25 < high <= 0.4
    True
    """
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(0)
    resampled = rng.choice(values, (BOOTSTRAP, len(values))).mean(1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class FidelityResult:
    """The score with some neurons masked or retained, against random neurons.

    Attributes
    ----------
    mode : str
        ``"mask"`` (the neurons ablated) or ``"retain"`` (only they kept).
    scope : str
        The layer, or ``"all layers"``.
    n_neurons : int
        Neurons of the circuit in the scope.
    baseline : float
        Score of the intact model.
    circuit : float
        Score with the circuit's neurons masked / retained.
    random : ndarray
        Scores with as many random neurons of the same layers, one per draw.

    Examples
    --------
    >>> import numpy as np
    >>> point = FidelityResult("mask", "relu3", 4, baseline=2.0, circuit=0.5,
    ...                        random=np.array([1.8, 1.9, 2.1]))
    >>> point.mode, bool(point.circuit < point.random.mean())
    ('mask', True)
    """

    mode: str
    scope: str
    n_neurons: int
    baseline: float
    circuit: float
    random: np.ndarray = field(repr=False)

    @property
    def random_mean(self) -> float:
        """Mean score over the random draws."""
        return float(self.random.mean())

    @property
    def random_ci(self) -> tuple[float, float]:
        """95% confidence interval of the random mean (a bootstrap percentile interval of
        the draws, seeded: it lies within them)."""
        return mean_interval(self.random)

    def plot(self) -> Figure:
        """Bars for the intact model, the circuit and random neurons (with the CI)."""
        return FidelityReport([self]).plot()


@dataclass(frozen=True)
class FidelityReport:
    """Fidelity results for several scopes (each layer, and all layers).

    Examples
    --------
    >>> import numpy as np
    >>> report = FidelityReport([FidelityResult("mask", "all", 4, 2.0, 0.5, np.array([1.9, 2.0]))])
    >>> [r.scope for r in report.results]
    ['all']
    """

    results: list[FidelityResult]

    def __getitem__(self, scope: str) -> FidelityResult:
        for result in self.results:
            if result.scope == scope:
                return result
        raise KeyError(f"no result for scope {scope!r}; scopes: {[r.scope for r in self.results]}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.results)

    @plain_text
    def plot(self) -> Figure:
        """Grouped bars per scope: circuit vs random (mean and 95% CI), intact score as a line."""
        figure = Figure(figsize=(3.4 + 1.4 * len(self.results), 3.2))
        axis = figure.add_subplot()
        x = np.arange(len(self.results))
        circuit = [r.circuit for r in self.results]
        random = [r.random_mean for r in self.results]
        errors = np.array([[r.random_mean - r.random_ci[0] for r in self.results]] * 2)
        mode = self.results[0].mode
        bars = axis.bar(x - 0.2, circuit, 0.4, label=f"circuit neurons {mode}ed", color="tab:red")
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
        bars = axis.bar(
            x + 0.2, random, 0.4, yerr=errors, label=f"random neurons {mode}ed", color="0.6"
        )
        axis.bar_label(bars, fmt="%.2f", fontsize=7, padding=6)
        axis.axhline(
            self.results[0].baseline, color="k", linestyle="--", linewidth=1, label="intact"
        )
        axis.set_xticks(x, [f"{r.scope}\n({r.n_neurons} n.)" for r in self.results], fontsize=8)
        axis.set_ylabel("score")
        # outside the bars and the intact line, which a legend inside would cover
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        figure.tight_layout()
        return figure


@dataclass(frozen=True)
class EdgeFidelityResult:
    """Summed importance of random lower-neuron subsets against the effect of ablating them.

    Attributes
    ----------
    node : str
        The upper node.
    sizes : ndarray
        Subset size of each draw.
    importance : ndarray
        Summed signed importance of each subset.
    change : ndarray
        Change of the node's mean value when the subset is ablated (after - before).
    pearson : float
        Correlation between ``importance`` and ``change`` (strongly negative when faithful).

    Examples
    --------
    >>> import numpy as np
    >>> found = EdgeFidelityResult("target", np.array([1, 1, 2, 2]), np.array([0.1, 0.5, 0.6, 1.2]),
    ...                            np.array([0.2, 0.4, 0.7, 1.0]), pearson=0.97)
    >>> found.node, found.sizes.tolist()
    ('target', [1, 1, 2, 2])
    """

    node: str
    sizes: np.ndarray = field(repr=False)
    importance: np.ndarray = field(repr=False)
    change: np.ndarray = field(repr=False)
    pearson: float

    @plain_text
    def plot(self) -> Figure:
        """Scatter of summed importance against the change, coloured by subset size."""
        figure = Figure(figsize=(4.2, 3.6))
        axis = figure.add_subplot()
        points = axis.scatter(self.importance, self.change, c=self.sizes, cmap="viridis", s=14)
        figure.colorbar(points, ax=axis, label="subset size")
        axis.set_xlabel("summed importance of the ablated neurons")
        axis.set_ylabel(f"change of {self.node}")
        axis.set_title(f"edge-weight fidelity: r = {self.pearson:.3f}", fontsize=9)
        figure.tight_layout()
        return figure


@dataclass(frozen=True)
class FaithfulnessCurve:
    """The fraction of the clean - corrupted metric difference that the circuit's
    strongest edges keep, at each size, and that random circuits of the size keep.

    Attributes
    ----------
    sizes : tuple of int
        Edges (or groups) kept at each point.
    total : int
        Edges of the whole graph (groups of the whole circuit).
    recovered : tuple of float
        The circuit's faithfulness at each size (1: the clean model, 0: the corrupted).
    random : ndarray
        (sizes, draws): the faithfulness of random circuits of each size.
    unit : str
        What a size counts: ``"edges"`` (a circuit through the stream) or ``"groups"``
        (NeurFlow's).

    Examples
    --------
    >>> curve = FaithfulnessCurve((1, 2), 10, (0.4, 0.9), np.array([[0.0, 0.1], [0.1, 0.2]]))
    >>> curve.smallest(0.8), curve.random_mean
    (2, (0.05, 0.15))
    """

    sizes: tuple[int, ...]
    total: int
    recovered: tuple[float, ...]
    random: np.ndarray = field(repr=False)
    unit: str = "edges"

    @property
    def fractions(self) -> tuple[float, ...]:
        """Each size as a fraction of the whole."""
        return tuple(size / self.total for size in self.sizes)

    @property
    def random_mean(self) -> tuple[float, ...]:
        """The random circuits' mean faithfulness at each size."""
        return tuple(round(float(row.mean()), 12) for row in self.random)

    @property
    def random_ci(self) -> tuple[tuple[float, float], ...]:
        """95% bootstrap interval of the random mean at each size."""
        return tuple(mean_interval(row) for row in self.random)

    def smallest(self, level: float = 0.8) -> int | None:
        """The fewest edges whose circuit keeps at least ``level`` (None: no size does)."""
        reached = (s for s, r in zip(self.sizes, self.recovered, strict=True) if r >= level)
        return next(reached, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: sizes, fractions, faithfulness, random mean and interval."""
        return {
            "unit": self.unit,
            "sizes": list(self.sizes),
            "total": self.total,
            "recovered": list(self.recovered),
            "random_mean": list(self.random_mean),
            "random_ci": [list(ci) for ci in self.random_ci],
            "draws": int(self.random.shape[1]),
        }

    def plot(self, title: str | None = None) -> Figure:
        """The circuit's curve over the share of edges, and the random circuits' band."""
        figure = Figure(figsize=(5.5, 3.6))
        axes = figure.subplots()
        shares = 100 * np.array(self.fractions)
        low, high = np.array(self.random_ci).T
        axes.plot(
            shares, self.recovered, "o-", color="#1f5fa8", label=f"circuit (strongest {self.unit})"
        )
        axes.plot(shares, self.random_mean, "s--", color="#888888", label="random circuits")
        axes.fill_between(shares, low, high, color="#bbbbbb", alpha=0.5, label="random 95% CI")
        axes.axhline(1.0, color="#444444", linewidth=0.8)
        axes.axhline(0.0, color="#444444", linewidth=0.8)
        axes.set_xlabel(f"{self.unit} kept (% of all)")
        axes.set_ylabel("logit difference recovered")
        axes.set_title(title or f"faithfulness: {self.unit} outside the circuit patched")
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        return figure
