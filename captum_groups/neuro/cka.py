"""Centred kernel alignment (linear CKA) between representations of the same stimuli.

Kornblith, Norouzi, Lee & Hinton (ICML 2019, "Similarity of Neural Network
Representations Revisited"): for activations X (n x p1) and Y (n x p2) on the
same n stimuli, with columns centred,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),

computed here from the Gram matrices K = X X^T and L = Y Y^T as
HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). It is invariant to orthogonal
transforms and to isotropic scaling of either representation, but not to
arbitrary invertible linear maps, so it can tell layers apart where
CCA-based measures cannot. ``unbiased=True`` uses the unbiased HSIC
estimator (Song et al., JMLR 2012), as minibatch CKA does (Nguyen, Raghu &
Kornblith, ICLR 2021); :func:`similarity_matrix` then averages HSIC over
minibatches of stimuli, so memory stays bounded on large stimulus sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._io.plain_text import plain_text
from .._validation.checks import Count, Flag, validate
from .._validation.deprecation import renamed_keywords
from .._validation.errors import ParameterError
from ..data import Data, iter_batches
from ._recordings import Recordings, aligned_rows, as_matrix, read_recordings
from .features import Source, features, source_label

__all__ = ["SimilarityMatrix", "cka", "similarity_matrix"]


def _gram(values: object, parameter: str) -> np.ndarray:
    """The Gram matrix of the centred representation.

    HSIC centres the Gram matrix anyway (and the unbiased estimator is
    unchanged by centring the features), so centring the columns first
    changes nothing in exact arithmetic; in floating point it is what keeps
    CKA right far from zero: raw firing rates or an fMRI signal with an
    offset of 1e4 put the Gram matrix's entries near 1e8 * units, and
    centring it afterwards cancels them to rounding noise. A constant
    column is set to exactly zero (its centred values would be rounding-size
    numbers), so a constant representation has HSIC 0 and CKA NaN.
    """
    matrix = as_matrix(values, parameter)
    centred = matrix - matrix.mean(0)
    centred[:, np.ptp(matrix, axis=0) == 0] = 0.0
    return centred @ centred.T


def _hsic(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:  # noqa: E741 (the paper's L)
    n = k.shape[0]
    if not unbiased:
        centre = np.eye(n) - 1.0 / n
        return float(np.sum((centre @ k @ centre) * l))
    k, l = k.copy(), l.copy()  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k, ones_l = k.sum(0), l.sum(0)
    value = (
        np.sum(k * l)
        + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * float(ones_k @ ones_l)
    )
    return float(value / (n * (n - 3)))


def _cka_from_grams(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:  # noqa: E741
    denominator = np.sqrt(_hsic(k, k, unbiased) * _hsic(l, l, unbiased))
    return float(_hsic(k, l, unbiased) / denominator) if denominator > 0 else float("nan")


def _check_pair(
    x: np.ndarray,
    y: np.ndarray,
    unbiased: bool,
    names: tuple[str, str, str] = ("y", "x", "y"),
    few: str = "x",
) -> None:
    """Refuse two representations of different stimuli (by ``names[0]``, calling the sides
    ``names[1]`` and ``names[2]``), or too few stimuli for the unbiased estimator (by
    ``few``)."""
    if x.shape[0] != y.shape[0]:
        raise ParameterError(
            names[0],
            f"{names[1]} and {names[2]} must hold the same stimuli (rows): got {x.shape[0]} "
            f"and {y.shape[0]}",
        )
    if unbiased and x.shape[0] < 4:
        raise ParameterError(few, "the unbiased HSIC estimator needs at least 4 stimuli")


def cka(x: object, y: object, unbiased: bool = False) -> float:
    """Linear CKA between two representations of the same stimuli.

    Parameters
    ----------
    x, y : array or Tensor
        (stimuli, units) activations or recordings; more axes are flattened
        per stimulus (a conv layer's output). Rows must match.
    unbiased : bool
        Use the unbiased HSIC estimator (Song et al. 2012): less biased
        upward for few stimuli and many units; it can be slightly negative.

    Returns
    -------
    float
        In [0, 1] for the standard estimator: 1 for representations equal
        up to an orthogonal transform and a scale. NaN when either is constant.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 8))
    >>> rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> round(cka(x, 3.0 * x @ rotation), 6)
    1.0
    >>> cka(x, rng.normal(size=(50, 8))) < 0.5
    True
    """
    validate({"unbiased": Flag()}, {"unbiased": unbiased})
    k, l = _gram(x, "x"), _gram(y, "y")  # noqa: E741
    _check_pair(k, l, unbiased)
    return _cka_from_grams(k, l, unbiased)


@dataclass(frozen=True)
class SimilarityMatrix:
    """CKA between every row source and every column source.

    Attributes
    ----------
    values : ndarray
        (rows, columns) CKA values.
    rows, columns : list of str
        The sources' names.
    unbiased : bool
        Whether the unbiased HSIC estimator was used.
    """

    values: np.ndarray
    rows: list[str]
    columns: list[str]
    unbiased: bool = False

    def best(self) -> dict[str, str]:
        """For every row, the column most similar to it.

        Examples
        --------
        >>> SimilarityMatrix(np.array([[0.2, 0.9]]), ["a"], ["b", "c"]).best()
        {'a': 'c'}
        """
        pairs = zip(self.rows, self.values, strict=True)
        return {row: self.columns[int(np.nanargmax(values))] for row, values in pairs}

    @plain_text
    def plot(self, title: str | None = None) -> Figure:
        """The matrix as a heat map, each row's best column outlined."""
        figure = Figure(figsize=(1.2 + 0.9 * len(self.columns), 1.0 + 0.6 * len(self.rows)))
        axes = figure.add_subplot()
        image = axes.imshow(self.values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axes.set_xticks(range(len(self.columns)), self.columns, rotation=45, ha="right")
        axes.set_yticks(range(len(self.rows)), self.rows)
        for i, row in enumerate(self.values):
            for j, value in enumerate(row):
                axes.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if value > 0.6 else "white",
                )
            best = int(np.nanargmax(row))
            axes.add_patch(_outline(best, i))
        figure.colorbar(image, ax=axes, label="unbiased CKA" if self.unbiased else "linear CKA")
        axes.set_title(title or "Linear CKA (Kornblith et al. 2019)")
        figure.tight_layout()
        return figure


def _outline(column: int, row: int):  # type: ignore[no-untyped-def]
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)


def _sources(model: nn.Module | None, given: object, parameter: str) -> dict[str, Source]:
    if given is None:
        raise ParameterError(parameter, f"{parameter} is needed")
    if isinstance(given, Mapping):
        return dict(given)
    items = [given] if isinstance(given, (str, nn.Module, Tensor, np.ndarray)) else list(given)
    return {source_label(model, item): item for item in items}


def _minibatches(stimuli: Data, batch_size: int | None) -> list[object]:
    """The stimuli as one batch, or as minibatches of ``batch_size``."""
    if batch_size is None:
        return [stimuli]
    return list(iter_batches(stimuli, batch_size, "stimuli"))


def _side_features(
    sides: dict[tuple[str, str], tuple[nn.Module, object]], batch: object
) -> dict[tuple[str, str], np.ndarray]:
    """The features of every (side, name) source, one pass per distinct model (one when a
    model is compared with itself)."""
    found = {}
    for owner in {id(m): m for m, _ in sides.values()}.values():
        mine = {f"{key[0]}:{key[1]}": key for key, (m, _) in sides.items() if m is owner}
        named = features(owner, {label: sides[key][1] for label, key in mine.items()}, batch)
        found.update({key: named[label] for label, key in mine.items()})
    return found


def _pair_names(a: tuple[str, str], b: tuple[str, str], recorded: bool) -> tuple[str, str, str]:
    """The parameter to blame for a mismatch of two sources, and how to call each."""
    parameters = {"row": "layers", "column": "recordings" if recorded else "other_layers"}

    def called(key: tuple[str, str]) -> str:
        return f"{parameters[key[0]]}[{key[1]!r}]"

    return parameters[b[0]], called(a), called(b)


def _hsic_sums(
    model: nn.Module,
    rows: dict[str, Source],
    other: nn.Module | None,
    columns: dict[str, object],
    stimuli: Data,
    unbiased: bool,
    batch_size: int | None,
) -> dict[tuple[str, str], float]:
    """HSIC of every (row, column) pair and of each side with itself, summed over minibatches."""
    keys = [("row", r) for r in rows] + [("column", c) for c in columns]
    pairs = [(a, b) for a in keys for b in keys if a[0] != b[0] or a == b]
    sums = dict.fromkeys(pairs, 0.0)
    offset = 0
    sides = {("row", k): (model, v) for k, v in rows.items()}
    if other is not None:
        sides.update({("column", k): (other, v) for k, v in columns.items()})
    for batch in _minibatches(stimuli, batch_size):
        found = _side_features(sides, batch)
        size = next(iter(found.values())).shape[0]
        if other is None:
            found.update({("column", k): v[offset : offset + size] for k, v in columns.items()})
        offset += size
        if size < 4 and batch_size is not None:
            continue  # a last minibatch too small for the unbiased estimator
        grams = {key: _gram(value, key[1]) for key, value in found.items()}
        for a, b in pairs:
            _check_pair(grams[a], grams[b], unbiased, _pair_names(a, b, other is None), "stimuli")
            sums[(a, b)] += _hsic(grams[a], grams[b], unbiased)
    wrong = {c: len(v) for c, v in columns.items() if len(v) != offset} if other is None else {}
    if wrong:
        name, rows = next(iter(wrong.items()))
        raise ParameterError(
            "recordings",
            f"recordings[{name!r}] must hold one row per stimulus ({offset} stimuli), got {rows}",
        )
    return sums


def _in_stimulus_order(found: Recordings, stimulus_ids: object, name: str) -> np.ndarray:
    """The recordings' rows in the order of the stimuli: as they are without
    ``stimulus_ids``, else each recorded stimulus moved to the row its identifier names."""
    if stimulus_ids is None:
        return found.mean
    rows = aligned_rows(found, len(np.asarray(stimulus_ids)), stimulus_ids, "stimuli", name)
    ordered = np.empty_like(found.mean)
    ordered[rows] = found.mean
    return ordered


@renamed_keywords(stimuli="data")
def similarity_matrix(
    model: nn.Module,
    layers: Sequence[Source] | Mapping[str, Source],
    data: Data,
    other: nn.Module | None = None,
    other_layers: Sequence[Source] | Mapping[str, Source] | None = None,
    recordings: Mapping[str, object] | None = None,
    unbiased: bool = False,
    batch_size: int | None = None,
    stimulus_ids: object = None,
) -> SimilarityMatrix:
    """CKA between the layers (or groups) of a model and those of another model, or a set of
    recordings (Kornblith et al., ICML 2019).

    Parameters
    ----------
    model : nn.Module
        The model whose sources are the rows.
    layers : sequence or mapping of sources
        Its layers, groups or GroupSets (see ``features``).
    data : Tensor, Dataset, DataLoader or list of batches
        The stimuli both sides saw, in the same order as any recordings.
    other : nn.Module, optional
        A second model whose ``other_layers`` are the columns.
    other_layers : sequence or mapping of sources, optional
        The columns' layers of ``other`` (by default the same names as ``layers``).
    recordings : mapping of str to recordings, optional
        Instead of a second model: named recordings (an array (data,
        units), (repetitions, stimuli, units), or an rsatoolbox Dataset), one
        column each.
    unbiased : bool
        Use the unbiased HSIC estimator.
    batch_size : int, optional
        With ``unbiased``, the minibatch of stimuli HSIC is averaged over
        (minibatch CKA, Nguyen et al. 2021; at least 4): memory stays
        bounded by the minibatch. By default all stimuli at once.
    stimulus_ids : array-like, optional
        An identifier per stimulus, to match the stimuli with recordings
        given as rsatoolbox Datasets by their ``stimulus`` descriptor (by
        identity, not position).

    Returns
    -------
    SimilarityMatrix

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> found = similarity_matrix(model, ["relu1", "relu3"], x[:100], other=model)
    >>> found.best()
    {'relu1': 'relu1', 'relu3': 'relu3'}
    """
    validate({"unbiased": Flag(), "batch_size": Count(4, optional=True)}, locals())
    if batch_size is not None and not unbiased:
        raise ParameterError(
            "batch_size",
            "batch_size averages HSIC over minibatches, which is only consistent with the "
            "unbiased estimator; pass unbiased=True, or leave batch_size out",
        )
    if (other is None) == (recordings is None):
        raise ParameterError(
            "other", "give either a second model (other) or named recordings, not both"
        )
    rows = _sources(model, layers, "layers")
    if other is not None:
        columns = _sources(
            other, other_layers if other_layers is not None else layers, "other_layers"
        )
        column_owner = other
    else:
        columns = {
            name: _in_stimulus_order(read_recordings(value, name), stimulus_ids, name)
            for name, value in recordings.items()  # type: ignore[union-attr]
        }
        column_owner = None
    sums = _hsic_sums(model, rows, column_owner, columns, data, unbiased, batch_size)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant side: 0 / 0 is NaN
        values = _cka_values(sums, rows, columns)
    return SimilarityMatrix(values, list(rows), list(columns), unbiased)


def _cka_values(sums: dict, rows: Mapping, columns: Mapping) -> np.ndarray:
    """The (rows, columns) CKA values from the summed HSIC of every pair."""
    return np.array(
        [
            [
                sums[(("row", r), ("column", c))]
                / np.sqrt(sums[(("row", r), ("row", r))] * sums[(("column", c), ("column", c))])
                for c in columns
            ]
            for r in rows
        ]
    )
