"""Fidelity curves: the score as more of the circuit is masked (or kept), against random neurons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._io.plain_text import plain_text
from ..circuits import FidelityResult

__all__ = ["fidelity_curves_figure"]


@plain_text
def fidelity_curves_figure(curves: Mapping[str, Sequence[FidelityResult]], mode: str) -> Figure:
    """One panel per scope: score against neurons masked/retained, circuit vs random (95% CI).

    Parameters
    ----------
    curves : mapping of scope to sequence of FidelityResult
        Each scope's results, ordered by the number of neurons.
    mode : {"mask", "retain"}
        For the title and labels.

    Examples
    --------
    >>> point = FidelityResult("mask", "all layers", 4, 1.0, 0.1, np.array([0.8, 0.9, 0.7]))
    >>> len(fidelity_curves_figure({"all layers": [point]}, "mask").axes)
    1
    """
    figure = Figure(figsize=(2.0 + 2.6 * len(curves), 2.9))
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    verb = "masked" if mode == "mask" else "retained"
    for axis, (scope, results) in zip(axes, curves.items(), strict=True):
        x = np.array([r.n_neurons for r in results])
        low, high = np.array([r.random_ci for r in results]).T
        axis.fill_between(
            x, low, high, color="0.6", alpha=0.35, linewidth=0, label="random, 95% CI"
        )
        axis.plot(x, [r.random_mean for r in results], "o-", color="0.45", label="random neurons")
        axis.plot(x, [r.circuit for r in results], "o-", color="tab:red", label="circuit neurons")
        axis.axhline(results[0].baseline, color="k", linestyle="--", linewidth=1, label="intact")
        if len(x) == 1:  # one point: an axis of a few neurons around it, not 7.6 to 8.4
            axis.set_xlim(x[0] - 2, x[0] + 2)
        axis.set_title(scope, fontsize=9)
        axis.set_xlabel(f"neurons {verb}", fontsize=8)
        scores = [r.baseline for r in results] + [r.circuit for r in results] + list(high)
        if 0.0 <= min(scores) and max(scores) <= 1.0:  # accuracies
            axis.set_ylim(-0.05, 1.05)
        axis.tick_params(labelsize=7)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("score", fontsize=8)
    # below the plots, never over the lines (the intact line runs along the top)
    handles, labels = axes[-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.09, 1, 1))
    return figure
