"""The alignment map: for each brain area, the layer and the groups that predict it best.

Brain-Score maps a model's layers to visual areas (V1, V2, V4, IT) by neural
predictivity (Schrimpf et al. 2018); Kar, Kornblith & Fedorenko (Nature
Machine Intelligence 2022) ask that model components be aligned with such
brain constructs, and groups, not single units, are the natural component to
align. :func:`alignment_map` scores every (area, layer) pair by
:class:`~captum_groups.neuro.NeuralPredictivity` (ceiled when the recordings
have repetitions), then every group of the given layers, and
:meth:`AlignmentMap.plot` draws the areas x layers map with each area's
best layer outlined and its best group named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from .._io.plain_text import plain_text
from .._validation.deprecation import renamed_keywords
from .._validation.errors import ParameterError
from ..data import Data
from ..groups import GroupsLike, Layer, NeuronGroup, as_group_list, layer_name
from ._recordings import read_recordings
from .encoding import NeuralPredictivity, named_as
from .features import features

__all__ = ["AlignmentMap", "alignment_map"]


@dataclass(frozen=True)
class AlignmentMap:
    """Neural predictivity of every layer (and group) for every brain area.

    Attributes
    ----------
    areas, layers : list of str
        The rows and columns of ``scores``.
    scores : ndarray
        (areas, layers): each layer's predictivity of each area (ceiled when
        the area's recordings have repetitions: r**2 / ceiling by default,
        Brain-Score 2.4's convention; the raw median r otherwise).
    group_scores : dict of str to dict of str to float
        For each area, each group's predictivity, by group label.
    groups : dict of str to NeuronGroup
        The groups, by label (``layer/name``).
    ceiled : dict of str to bool
        Whether an area's scores are divided by its noise ceiling.
    errors : ndarray or None
        (areas, layers): the standard error of each score over the
        cross-validation splits (on the scores' own scale), the interval
        drawn under each value.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.neuro import features
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> area = features(model, NeuronGroup("relu3", [0, 1, 2]), x)
    >>> found = alignment_map(model, ["relu1", "relu3"], x, {"IT": area}, n_splits=3)
    >>> found.areas, found.layers, found.scores.shape, found.best_layer()["IT"]
    (['IT'], ['relu1', 'relu3'], (1, 2), 'relu3')
    """

    areas: list[str]
    layers: list[str]
    scores: np.ndarray
    group_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    groups: dict[str, NeuronGroup] = field(default_factory=dict)
    ceiled: dict[str, bool] = field(default_factory=dict)
    errors: np.ndarray | None = None

    def best_layer(self) -> dict[str, str]:
        """Each area's best-predicting layer."""
        return {area: self.layers[int(np.nanargmax(row))] for area, row in self._rows()}

    def best_groups(self, n: int = 3, same_layer: bool = True) -> dict[str, list[NeuronGroup]]:
        """Each area's ``n`` best-predicting groups, best first (by default only the groups
        of its best layer; a group with no score, NaN for a group silent on every
        stimulus, is never among them)."""
        best = self.best_layer()
        chosen = {}
        for area, scores in self.group_scores.items():
            scored = [label for label in scores if np.isfinite(scores[label])]  # NaN: no score
            ranked = sorted(scored, key=scores.get, reverse=True)  # type: ignore[arg-type]
            if same_layer:
                ranked = [g for g in ranked if g.split("/")[0] == best[area]]
            chosen[area] = [self.groups[label] for label in ranked[:n]]
        return chosen

    def _rows(self):  # type: ignore[no-untyped-def]
        return zip(self.areas, self.scores, strict=True)

    @plain_text
    def plot(self, title: str | None = None) -> Figure:
        """The areas x layers map: predictivity per cell, each area's best layer outlined and
        labelled with its best group."""
        figure = Figure(figsize=(1.8 + 1.4 * len(self.layers), 1.2 + 0.9 * len(self.areas)))
        axes = figure.add_subplot()
        # one scale over the range of the scores (light: the lowest, dark: the highest), so
        # that the differences between layers show; the numbers give the values
        finite = self.scores[np.isfinite(self.scores)]
        low, top = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        low, top = float(low), float(max(top, low + 1e-12))
        image = axes.imshow(self.scores, cmap="Blues", vmin=low, vmax=top, aspect="auto")
        axes.set_xticks(range(len(self.layers)), self.layers, rotation=30, ha="right")
        axes.set_yticks(range(len(self.areas)), self.areas)
        top_groups = self.best_groups(n=1)
        for i, (area, row) in enumerate(self._rows()):
            best = int(np.nanargmax(row))
            for j, value in enumerate(row):
                text = f"{value:.2f}"
                if self.errors is not None:
                    text += f"\n±{self.errors[i, j]:.2f}"
                # dark text on light cells, white on dark ones
                light = not np.isfinite(value) or value < low + 0.55 * (top - low)
                colour = "black" if light else "white"
                weight = "bold" if j == best else "normal"
                axes.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                    fontweight=weight,
                )
            axes.add_patch(
                Rectangle((best - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)
            )
            if top_groups.get(area):
                name = top_groups[area][0].name or "group"
                axes.text(
                    best,
                    i - 0.36,
                    name,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="red",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
                )
        label = (
            "ceiled predictivity (r² / ceiling)"
            if self.ceiled and all(self.ceiled.values())
            else "predictivity (median r)"
        )
        figure.colorbar(image, ax=axes, label=label)
        axes.set_title(title or "Alignment map: areas x layers")
        figure.tight_layout()
        return figure


def _group_labels(model: nn.Module, groups: GroupsLike | None) -> dict[str, NeuronGroup]:
    if groups is None:
        return {}
    labelled = {}
    for group in as_group_list(groups):
        name = group.name or "[" + ",".join(map(str, group.indices[:6])) + "]"
        call = "" if group.call is None else f"@{group.call}"
        labelled[f"{layer_name(model, group.layer)}/{name}{call}"] = group
    if len(labelled) != len(as_group_list(groups)):
        raise ParameterError("groups", "groups must have distinct names within each layer")
    return labelled


def _score(
    matrix: np.ndarray, area: str, recordings: object, params: dict, rows: dict
) -> tuple[float, float, bool]:
    """The score, its standard error over splits, and whether it is ceiled (``rows``: the
    fit's per-stimulus arguments, ``stratify`` and ``stimulus_ids``)."""
    with named_as({"X": ("stimuli", "the features"), "y": ("areas", f"areas[{area!r}]")}):
        found = NeuralPredictivity(**params).fit(matrix, recordings, **rows)
    if found.ceiled_score_ is not None:
        return found.ceiled_score_, found.ceiled_error_, True  # type: ignore[return-value]
    return found.score_, found.score_error_, False


@renamed_keywords(stimuli="data")
def alignment_map(
    model: nn.Module,
    layers: Sequence[Layer],
    data: Data,
    areas: Mapping[str, object],
    groups: GroupsLike | None = None,
    batch_size: int = 256,
    stratify: object = None,
    stimulus_ids: object = None,
    **predictivity: object,
) -> AlignmentMap:
    """Score every layer and group of a model against the recordings of every brain area.

    Parameters
    ----------
    model : nn.Module
        The model.
    layers : sequence of str or nn.Module
        The candidate layers.
    data : Tensor, Dataset, DataLoader or list of batches
        The stimuli the areas were recorded on, in the same order.
    areas : mapping of str to recordings
        Each area's name and its recordings: (stimuli, units), (repetitions,
        stimuli, units) for a ceiled score, or an rsatoolbox Dataset.
    groups : NeuronGroup, GroupSet or sequence of NeuronGroup, optional
        Groups of the layers, each scored on its member neurons.
    batch_size : int
        Stimuli per forward pass.
    stratify : array-like, optional
        A label per stimulus to stratify the cross-validation splits by (as
        Brain-Score stratifies by object).
    stimulus_ids : array-like, optional
        An identifier per stimulus, to match the stimuli with areas recorded
        as rsatoolbox Datasets by the ``stimulus`` descriptor (by identity,
        not position).
    **predictivity
        :class:`~captum_groups.neuro.NeuralPredictivity`'s parameters
        (``n_components``, ``n_splits``, ``test_size``, ``random_state``).

    Returns
    -------
    AlignmentMap

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> area = features(model, NeuronGroup("relu3", [0, 1, 2]), x)
    >>> found = alignment_map(model, ["relu1", "relu3"], x, {"IT": area}, n_splits=3)
    >>> found.best_layer()
    {'IT': 'relu3'}
    """
    if not isinstance(areas, Mapping) or not areas:
        raise ParameterError("areas", "areas must be a non-empty mapping of name to recordings")
    readings = {name: read_recordings(value, name) for name, value in areas.items()}
    labelled = _group_labels(model, groups)
    names = [layer_name(model, layer) for layer in layers]
    if not names:
        raise ParameterError("layers", "layers is empty; give at least one layer")
    found = features(model, {**dict(zip(names, layers, strict=True)), **labelled}, data, batch_size)
    scores, errors = np.zeros((len(readings), len(names))), np.zeros((len(readings), len(names)))
    group_scores: dict[str, dict[str, float]] = {}
    ceiled = {}
    rows = {"stratify": stratify, "stimulus_ids": stimulus_ids}
    for i, (area, target) in enumerate(readings.items()):
        for j, name in enumerate(names):
            scores[i, j], errors[i, j], ceiled[area] = _score(
                found[name], area, target, predictivity, rows
            )
        group_scores[area] = {
            label: _score(found[label], area, target, predictivity, rows)[0] for label in labelled
        }
    return AlignmentMap(list(readings), names, scores, group_scores, labelled, ceiled, errors)
