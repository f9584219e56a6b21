"""Encoding models: how well model units predict recorded responses (neural predictivity).

Brain-Score's protocol, as Brain-Score vision 2.4 computes it (Schrimpf et
al., bioRxiv 2018, "Brain-Score: Which Artificial Neural Network for Object
Recognition is most Brain-Like?"; the ``pls_cv`` metric, the
``internal_consistency`` ceiling and ``NeuralBenchmark``), reproduced to
rounding on data Brain-Score itself scored (``benchmarks/brainscore_fixtures.py``):

1. PLS regression (25 components, no scaling) from model features to every
   recorded site, cross-validated over stimuli: 10 splits of 90/10
   (scikit-learn's ``ShuffleSplit``, or ``StratifiedShuffleSplit`` by object
   label where ``stratify`` is given), seed 1.
2. Pearson r per site between the held-out predictions and responses (NaN
   where either is constant); each split's score is the median over sites
   (NaN skipped), the raw score the mean over splits.
3. The ceiling: the repetitions split into halves (10 halvings over the
   repetition indices, ``ShuffleSplit(train_size=0.5)``, seed 1), the
   Pearson r of the two halves' mean responses per site, Spearman-Brown
   corrected (2r / (1 + r)); the median over sites per halving, the mean
   over halvings.
4. The ceiled score, by ``ceiling_convention`` (:data:`CEILING_CONVENTIONS`):
   Brain-Score 2.4's ``explained_variance``, r**2 / ceiling, by default.

Reverse predictivity fits the other way, from recordings to model units.
:class:`NeuralPredictivity` is a scikit-learn estimator (PLSRegression
underneath); :func:`neural_predictivity` and :func:`reverse_predictivity`
fit it on features (see :func:`~captum_groups.neuro.features`) and recordings.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cross_decomposition import PLSRegression
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.validation import check_is_fitted

from .._validation.checks import SEED, Choice, Count, Flag, Number, validate
from .._validation.errors import ParameterError
from ._recordings import Recordings, aligned_rows, as_matrix, read_recordings

__all__ = [
    "CEILING_CONVENTIONS",
    "NeuralPredictivity",
    "neural_predictivity",
    "pearson_per_unit",
    "reverse_predictivity",
    "split_half_ceiling",
]

CEILING_CONVENTIONS = {
    "explained_variance": "r**2 / ceiling: Brain-Score vision 2.4's NeuralBenchmark "
    "(benchmark_helpers/neural_common.py, explained_variance)",
    "squared_ratio": "(r / ceiling)**2: Brain-Score vision 2.4's coggan2024_fMRI benchmark, "
    "and Brain-Score's neural benchmarks before explained_variance",
    "ratio": "r / ceiling: Brain-Score vision 2.4's benchmarks.ceil_score (its behavioural "
    "benchmarks; Schrimpf et al. 2018)",
    "per_unit": "the mean over sites of r_site**2 / ceiling_site: Brain-Score vision 2.4's "
    "neuroid_wise_explained_var (per_voxel_ceilings=True)",
}
"""The ceiled scores :class:`NeuralPredictivity` offers, each with the reference it follows."""


def pearson_per_unit(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Pearson r between two (stimuli, units) matrices, column by column (NaN where either
    column is constant: the correlation is undefined, as scipy's ``pearsonr`` says).

    Examples
    --------
    >>> pearson_per_unit(np.array([[1.0, 2], [2, 1], [3, 0]]), np.array([[2.0, 0], [4, 1], [6, 2]]))
    array([ 1., -1.])
    """
    a = predicted - predicted.mean(0)
    b = actual - actual.mean(0)
    # a column whose values are all equal is constant, even where its centred values are
    # rounding-size numbers rather than zeros
    constant = (np.ptp(predicted, axis=0) == 0) | (np.ptp(actual, axis=0) == 0)
    denominator = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(0) / denominator
    return np.where(constant | ~(denominator > 0), np.nan, r)


def _nan_reduce(reduce: Callable[..., np.ndarray], values: np.ndarray, axis: int) -> np.ndarray:
    """``reduce`` (``np.nanmedian`` or ``np.nanmean``) over ``axis``, NaN where every value
    is NaN (as xarray's skipna reductions give in Brain-Score), without numpy's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(values, axis=axis)


def _halving_reliabilities(
    repetitions: np.ndarray, n_halvings: int, random_state: int | None
) -> np.ndarray:
    """(halvings, units): each halving's Spearman-Brown corrected split-half reliability,
    with Brain-Score's halvings (``ShuffleSplit(train_size=0.5)`` over the repetition
    indices: for an odd count the second half has one more)."""
    halvings = ShuffleSplit(n_halvings, train_size=0.5, test_size=None, random_state=random_state)
    values = []
    for first, second in halvings.split(np.zeros(repetitions.shape[0])):
        r = pearson_per_unit(repetitions[first].mean(0), repetitions[second].mean(0))
        values.append(2 * r / (1 + r))
    return np.array(values)


def _repetitions(recordings: object, parameter: str) -> np.ndarray:
    found = read_recordings(recordings, parameter).repetitions
    if found is None:
        raise ParameterError(
            parameter, f"{parameter} must be (repetitions, stimuli, units) with at least two"
        )
    return found


def split_half_ceiling(
    repetitions: object, n_splits: int = 10, random_state: int | None = 1
) -> np.ndarray:
    """Each recorded unit's noise ceiling: split-half reliability over repetitions,
    Spearman-Brown corrected, averaged over Brain-Score's halvings.

    Parameters
    ----------
    repetitions : array, Tensor or rsatoolbox Dataset
        (repetitions, stimuli, units), at least two repetitions.
    n_splits : int
        Random halvings of the repetitions to average over (Brain-Score: 10).
    random_state : int, optional
        Seed of the halvings (Brain-Score: 1).

    Returns
    -------
    ndarray
        (units,): 2r / (1 + r), r the Pearson correlation between the mean
        responses of the two halves, averaged over halvings (NaN for a unit
        whose halves are constant). Brain-Score's single ceiling is the mean
        over halvings of the median over units: :class:`NeuralPredictivity`'s
        ``ceiling_``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(1, 200, 3))
    >>> reliable = split_half_ceiling(signal + 0.1 * rng.normal(size=(6, 200, 3)))
    >>> bool((reliable > 0.95).all())
    True
    """
    validate({"n_splits": Count(1), "random_state": SEED}, locals())
    found = _repetitions(repetitions, "repetitions")
    return _nan_reduce(np.nanmean, _halving_reliabilities(found, n_splits, random_state), 0)


class NeuralPredictivity(BaseEstimator):
    """Brain-Score's neural predictivity as a scikit-learn estimator.

    The defaults are Brain-Score vision 2.4's, and so are its numbers: the
    raw score, ceiling and ceiled score equal Brain-Score's on the same data
    (stimuli in the same order, the same object labels to stratify by).

    Parameters
    ----------
    n_components : int
        PLS components (Brain-Score: 25); fewer when the training features
        have a lower rank (a small group, or one with silent neurons).
    n_splits : int
        Random train/test splits of the stimuli (Brain-Score: 10).
    test_size : float
        Fraction of stimuli held out in each split (Brain-Score: 0.1; the
        training set is ``floor((1 - test_size) * stimuli)`` stimuli, as
        Brain-Score's ``train_size=0.9`` gives).
    scale : bool
        Let PLS scale features and responses to unit variance (Brain-Score: no).
    random_state : int, optional
        Seed of the splits and of the ceiling's halvings (Brain-Score: 1).
    n_halvings : int
        Random halvings of the repetitions for the ceiling (Brain-Score: 10).
    ceiling_convention : str
        How ``ceiled_score_`` combines the raw score and the ceiling, one of
        :data:`CEILING_CONVENTIONS`: ``"explained_variance"`` (r**2 / ceiling,
        Brain-Score 2.4's neural benchmarks), ``"squared_ratio"``
        ((r / ceiling)**2), ``"ratio"`` (r / ceiling) or ``"per_unit"`` (the
        mean over sites of r**2 / ceiling per site).

    Attributes
    ----------
    splits_ : list of (ndarray, ndarray)
        The (train, test) stimulus indices of each split (rows of the
        recordings; of the features after alignment by ``stimulus_ids``).
    correlations_ : ndarray
        (splits, units): held-out Pearson r of each split and recorded unit
        (NaN where the prediction or the response is constant: Brain-Score
        skips those sites in the median).
    split_scores_ : ndarray
        (splits,): the median of ``correlations_`` over units in each split.
    unit_scores_ : ndarray
        (units,): r averaged over splits.
    score_ : float
        The raw score: the mean of ``split_scores_`` (Brain-Score's order:
        median over sites, then mean over splits).
    score_error_ : float
        Its standard error over splits (Brain-Score's ``error``).
    unit_ceilings_ : ndarray or None
        (units,): each site's split-half ceiling averaged over halvings,
        when repetitions were given.
    ceiling_ : float or None
        Brain-Score's ceiling: the median over sites of each halving's
        Spearman-Brown corrected reliability, averaged over halvings.
    ceiled_score_ : float or None
        The score over the ceiling, by ``ceiling_convention``.
    ceiled_error_ : float or None
        The standard error over splits of each split's score over the
        ceiling (the interval of ``ceiled_score_`` on its own scale;
        Brain-Score attaches the raw score's error to the ceiled score).
    estimator_ : PLSRegression or DummyRegressor
        PLS fitted on all stimuli, for :meth:`predict` (the training mean when
        the features are constant).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(120, 10))
    >>> y = x[:, :3] @ rng.normal(size=(3, 4)) + 0.1 * rng.normal(size=(120, 4))
    >>> found = NeuralPredictivity(n_components=5).fit(x, y)
    >>> round(found.score_, 2) > 0.9, found.correlations_.shape
    (True, (10, 4))
    """

    def __init__(
        self,
        n_components: int = 25,
        n_splits: int = 10,
        test_size: float = 0.1,
        scale: bool = False,
        random_state: int | None = 1,
        n_halvings: int = 10,
        ceiling_convention: str = "explained_variance",
    ) -> None:
        self.n_components = n_components
        self.n_splits = n_splits
        self.test_size = test_size
        self.scale = scale
        self.random_state = random_state
        self.n_halvings = n_halvings
        self.ceiling_convention = ceiling_convention

    def _pls(self, features: np.ndarray) -> PLSRegression | DummyRegressor:
        """PLS with ``n_components``, or fewer: no more than the rank of the (centred)
        training features (PLS finds no more directions; asking for more gives noise, e.g.
        for a group with silent neurons). Constant features (a group silent on every
        training stimulus) predict the training mean, whose correlation is undefined."""
        rank = int(np.linalg.matrix_rank(features - features.mean(0)))
        if rank == 0:
            return DummyRegressor(strategy="mean")
        return PLSRegression(n_components=min(self.n_components, rank), scale=self.scale)

    def _splits(self, n_stimuli: int, stratify: np.ndarray | None) -> list:
        """Brain-Score's splits: ``train_size`` (not ``test_size``) is what it passes to
        scikit-learn, and the two round differently."""
        train_size = 1.0 - self.test_size
        if stratify is None:
            splitter = ShuffleSplit(
                self.n_splits, train_size=train_size, random_state=self.random_state
            )
            return list(splitter.split(np.zeros(n_stimuli)))
        splitter = StratifiedShuffleSplit(
            self.n_splits, train_size=train_size, random_state=self.random_state
        )
        try:
            return list(splitter.split(np.zeros(n_stimuli), stratify))
        except ValueError as error:
            raise ParameterError(
                "stratify", f"stratify cannot stratify these splits: {error}"
            ) from None

    def fit(
        self,
        X: object,  # noqa: N803 (scikit-learn)
        y: object,
        *,
        stratify: object = None,
        stimulus_ids: object = None,
    ) -> NeuralPredictivity:
        """Cross-validate PLS from features ``X`` (stimuli, features) to recordings ``y``
        ((stimuli, units), (repetitions, stimuli, units), or an rsatoolbox Dataset).

        Parameters
        ----------
        X : array or Tensor
            (stimuli, features).
        y : array, Tensor or rsatoolbox Dataset
            The recordings.
        stratify : array-like, optional
            A label per row of ``X`` (Brain-Score: the object each image
            shows): the splits keep the labels' proportions.
        stimulus_ids : array-like, optional
            An identifier per row of ``X``, to align ``X`` with recordings
            that carry identifiers (an rsatoolbox Dataset's ``stimulus``
            descriptor). Without it, rows are taken in the recordings' order.
        """
        validate(
            {
                "n_components": Count(1),
                "n_splits": Count(1),
                "test_size": Number(0, 1, open=True),
                "scale": Flag(),
                "random_state": SEED,
                "n_halvings": Count(1),
                "ceiling_convention": Choice(tuple(CEILING_CONVENTIONS)),
            },
            self.get_params(),
        )
        features = as_matrix(X, "X")
        recordings = read_recordings(y, "y")
        rows = aligned_rows(recordings, features.shape[0], stimulus_ids, "X", "y")
        features = features[rows]
        labels = None if stratify is None else _labels(stratify, len(rows))[rows]
        self.splits_ = self._splits(len(rows), labels)
        self.correlations_ = np.array(
            [self._held_out_r(features, recordings, s) for s in self.splits_]
        )
        self.split_scores_ = _nan_reduce(np.nanmedian, self.correlations_, 1)
        self.unit_scores_ = _nan_reduce(np.nanmean, self.correlations_, 0)
        self.score_ = float(_nan_reduce(np.nanmean, self.split_scores_, 0))
        self.score_error_ = _standard_error(self.split_scores_)
        self._fit_ceiling(recordings)
        self.estimator_ = self._pls(features).fit(features, recordings.mean)
        return self

    def _held_out_r(
        self, features: np.ndarray, recordings: Recordings, split: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        train, test = split
        if len(test) < 2:
            raise ParameterError("test_size", "test_size leaves fewer than 2 test stimuli")
        pls = self._pls(features[train]).fit(features[train], recordings.mean[train])
        return pearson_per_unit(pls.predict(features[test]), recordings.mean[test])

    def _fit_ceiling(self, recordings: Recordings) -> None:
        self.unit_ceilings_ = self.ceiling_ = self.ceiled_score_ = self.ceiled_error_ = None
        if recordings.repetitions is None:
            return
        halvings = _halving_reliabilities(
            recordings.repetitions, self.n_halvings, self.random_state
        )
        self.unit_ceilings_ = _nan_reduce(np.nanmean, halvings, 0)
        self.ceiling_ = float(_nan_reduce(np.nanmean, _nan_reduce(np.nanmedian, halvings, 1), 0))
        self.ceiled_score_ = self._ceiled(self.score_, self.unit_scores_)
        pairs = zip(self.split_scores_, self.correlations_, strict=True)
        by_split = [self._ceiled(score, by_unit) for score, by_unit in pairs]
        self.ceiled_error_ = _standard_error(np.array(by_split))

    def _ceiled(self, score: float, unit_scores: np.ndarray) -> float:
        """A raw score (and its units' r) over the ceiling, by ``ceiling_convention``."""
        ceiling = self.ceiling_
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.ceiling_convention == "explained_variance":
                return float(score**2 / ceiling)  # type: ignore[operator]
            if self.ceiling_convention == "squared_ratio":
                return float((score / ceiling) ** 2)  # type: ignore[operator]
            if self.ceiling_convention == "ratio":
                return float(score / ceiling)  # type: ignore[operator]
            by_unit = unit_scores**2 / self.unit_ceilings_  # type: ignore[operator]
            return float(_nan_reduce(np.nanmean, by_unit, 0))

    def predict(self, X: object) -> np.ndarray:  # noqa: N803 (scikit-learn)
        """Predicted responses (stimuli, units) of the PLS fitted on all stimuli."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(as_matrix(X, "X"))

    def score(self, X: object, y: object) -> float:  # noqa: N803 (scikit-learn)
        """The median over units of the Pearson r between :meth:`predict` and ``y``."""
        recordings = read_recordings(y, "y")
        r = pearson_per_unit(self.predict(X), recordings.mean)
        return float(_nan_reduce(np.nanmedian, r, 0))


@contextmanager
def named_as(names: dict[str, tuple[str, str]]) -> Iterator[None]:
    """Errors of :meth:`NeuralPredictivity.fit` (whose parameters are ``X`` and ``y``) told
    in the caller's words: ``names`` maps ``"X"``/``"y"`` to (the caller's parameter, how
    its message names the value), e.g. ``{"y": ("areas", "areas['IT']")}``."""
    try:
        yield
    except ParameterError as error:
        if error.parameter not in names:
            raise
        message = re.sub(
            r"\b(X|y)\b", lambda m: names.get(m.group(1), (m.group(1),) * 2)[1], str(error)
        )
        raise ParameterError(names[error.parameter][0], message) from None


def _standard_error(values: np.ndarray) -> float:
    """The standard error of the mean over splits, as Brain-Score's ``error`` gives it
    (xarray's ``std``, ddof 0, over the square root of the count; NaN splits skipped)."""
    kept = values[~np.isnan(values)]
    return float(kept.std() / np.sqrt(len(kept))) if len(kept) else float("nan")


def _labels(stratify: object, n_rows: int) -> np.ndarray:
    labels = np.asarray(stratify)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ParameterError(
            "stratify", f"stratify must hold one label per stimulus ({n_rows}), got {labels.shape}"
        )
    return labels


def neural_predictivity(
    features: object,
    recordings: object,
    stratify: object = None,
    stimulus_ids: object = None,
    **params: object,
) -> NeuralPredictivity:
    """How well model features predict recordings (Brain-Score's protocol and numbers).

    Parameters
    ----------
    features : array or Tensor
        (stimuli, features), e.g. from :func:`~captum_groups.neuro.features`
        for a layer, a group or a GroupSet.
    recordings : array, Tensor or rsatoolbox Dataset
        (stimuli, units), or (repetitions, stimuli, units) for the ceiling.
    stratify : array-like, optional
        A label per stimulus (row of ``features``) to stratify the splits by,
        as Brain-Score stratifies by object.
    stimulus_ids : array-like, optional
        An identifier per row of ``features``, to align them with recordings
        that carry identifiers (see :class:`NeuralPredictivity`'s ``fit``).
    **params
        :class:`NeuralPredictivity`'s parameters.

    Returns
    -------
    NeuralPredictivity
        Fitted: ``score_`` (raw), ``ceiling_``, ``ceiled_score_`` (r**2 /
        ceiling by default), ``unit_scores_`` ...

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(100, 6))
    >>> recorded = x[:, :2] @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(4, 100, 5))
    >>> found = neural_predictivity(x, recorded, stratify=np.arange(100) % 10)
    >>> found.unit_ceilings_.shape, bool(0 < found.ceiled_score_ <= 1.1)
    ((5,), True)
    """
    with named_as({"X": ("features", "features"), "y": ("recordings", "recordings")}):
        return NeuralPredictivity(**params).fit(  # type: ignore[arg-type]
            features, recordings, stratify=stratify, stimulus_ids=stimulus_ids
        )


def reverse_predictivity(
    features: object,
    recordings: object,
    stratify: object = None,
    stimulus_ids: object = None,
    **params: object,
) -> NeuralPredictivity:
    """How well the recordings predict the model's units: the same protocol fitted from
    brain to model (Brain-Score's ``ReverseCrossRegressedCorrelation``; the score is over
    model units; no ceiling).

    Parameters
    ----------
    features, recordings, stratify, stimulus_ids
        As in :func:`neural_predictivity`.
    **params
        :class:`NeuralPredictivity`'s parameters.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> recorded = rng.normal(size=(100, 8))
    >>> units = recorded[:, :3] @ rng.normal(size=(3, 4))
    >>> round(reverse_predictivity(units, recorded, n_components=8).score_, 3)
    1.0
    """
    found = read_recordings(recordings)
    matrix = as_matrix(features, "features")
    rows = aligned_rows(found, matrix.shape[0], stimulus_ids, "features", "recordings")
    labels = None if stratify is None else _labels(stratify, len(rows))[rows]
    with named_as({"X": ("recordings", "recordings"), "y": ("features", "features")}):
        return NeuralPredictivity(**params).fit(found.mean, matrix[rows], stratify=labels)  # type: ignore[arg-type]
