"""Encoding models: how well model units predict recorded responses (neural predictivity).

Brain-Score's protocol (Schrimpf et al., bioRxiv 2018, "Brain-Score: Which
Artificial Neural Network for Object Recognition is most Brain-Like?"): PLS
regression (25 components, fewer for small groups) from model features to
every recorded unit, cross-validated over stimuli (10 random 90/10 splits),
Pearson r between held-out predictions and responses per recorded unit,
averaged over splits, the median over units as the score. When each stimulus
was recorded several times, the score is also divided by the noise ceiling:
the split-half reliability of the recordings, Spearman-Brown corrected.
Reverse predictivity fits the other way, from recordings to model units.

:class:`NeuralPredictivity` is a scikit-learn estimator (PLSRegression
underneath); :func:`neural_predictivity` and :func:`reverse_predictivity`
fit it on features (see :func:`~captum_groups.neuro.features`) and recordings.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cross_decomposition import PLSRegression
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import ShuffleSplit
from sklearn.utils.validation import check_is_fitted

from .._checks import SEED, Count, Flag, Number, validate
from .._errors import ParameterError
from ._recordings import as_matrix, read_recordings

__all__ = [
    "NeuralPredictivity",
    "neural_predictivity",
    "pearson_per_unit",
    "reverse_predictivity",
    "split_half_ceiling",
]


def pearson_per_unit(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Pearson r between two (stimuli, units) matrices, column by column (NaN for a
    constant column).

    Examples
    --------
    >>> pearson_per_unit(np.array([[1.0, 2], [2, 1], [3, 0]]), np.array([[2.0, 0], [4, 1], [6, 2]]))
    array([ 1., -1.])
    """
    a = predicted - predicted.mean(0)
    b = actual - actual.mean(0)
    denominator = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(0) / denominator, np.nan)


def _held_out_r(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Pearson r per unit, 0 where the prediction is constant (it predicts nothing)."""
    r = pearson_per_unit(predicted, actual)
    return np.where(np.ptp(predicted, axis=0) > 0, r, 0.0)


def split_half_ceiling(
    repetitions: object, n_splits: int = 10, random_state: int | None = 0
) -> np.ndarray:
    """Each recorded unit's noise ceiling: split-half reliability over repetitions,
    Spearman-Brown corrected, averaged over random splits.

    Parameters
    ----------
    repetitions : array or Tensor
        (repetitions, stimuli, units), at least two repetitions.
    n_splits : int
        Random halvings of the repetitions to average over.
    random_state : int, optional
        Seed of the halvings.

    Returns
    -------
    ndarray
        (units,): 2r / (1 + r), r the Pearson correlation between the mean
        responses of the two halves.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(1, 200, 3))
    >>> reliable = split_half_ceiling(signal + 0.1 * rng.normal(size=(6, 200, 3)))
    >>> bool((reliable > 0.95).all())
    True
    """
    validate({"n_splits": Count(1), "random_state": SEED}, locals())
    found = read_recordings(repetitions, "repetitions").repetitions
    if found is None:
        raise ParameterError(
            "repetitions", "repetitions must be (repetitions, stimuli, units) with at least two"
        )
    rng = np.random.default_rng(random_state)
    half = found.shape[0] // 2
    values = []
    for _ in range(n_splits):
        order = rng.permutation(found.shape[0])
        r = pearson_per_unit(found[order[:half]].mean(0), found[order[half:]].mean(0))
        values.append(2 * r / (1 + r))
    return np.mean(values, axis=0)


class NeuralPredictivity(BaseEstimator):
    """Brain-Score's neural predictivity as a scikit-learn estimator.

    Parameters
    ----------
    n_components : int
        PLS components (Brain-Score: 25); fewer when the training features
        have a lower rank (a small group, or one with silent neurons).
    n_splits : int
        Random train/test splits of the stimuli (Brain-Score: 10).
    test_size : float
        Fraction of stimuli held out in each split (Brain-Score: 0.1).
    scale : bool
        Let PLS scale features and responses to unit variance (Brain-Score: no).
    random_state : int, optional
        Seed of the splits.

    Attributes
    ----------
    splits_ : list of (ndarray, ndarray)
        The (train, test) stimulus indices of each split.
    correlations_ : ndarray
        (splits, units): held-out Pearson r of each split and recorded unit
        (0 where the prediction is constant: the features carry nothing).
    unit_scores_ : ndarray
        (units,): r averaged over splits.
    score_ : float
        The median of ``unit_scores_`` over units.
    ceiling_ : ndarray or None
        (units,): split-half noise ceiling, when repetitions were given.
    ceiled_score_ : float or None
        ``score_`` divided by the median ceiling. As in Brain-Score, the ceiling
        is the reliability of the mean over all repetitions, and a model that
        predicts the noise-free signal exactly reaches r = sqrt(ceiling), so a
        near-perfect model scores above 1.
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
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.n_splits = n_splits
        self.test_size = test_size
        self.scale = scale
        self.random_state = random_state

    def _pls(self, features: np.ndarray) -> PLSRegression | DummyRegressor:
        """PLS with ``n_components``, or fewer: no more than the rank of the (centred)
        training features (PLS finds no more directions; asking for more gives noise, e.g.
        for a group with silent neurons). Constant features (a group silent on every
        training stimulus) predict the training mean."""
        rank = int(np.linalg.matrix_rank(features - features.mean(0)))
        if rank == 0:
            return DummyRegressor(strategy="mean")
        return PLSRegression(n_components=min(self.n_components, rank), scale=self.scale)

    def fit(self, X: object, y: object) -> NeuralPredictivity:  # noqa: N803 (scikit-learn)
        """Cross-validate PLS from features ``X`` (stimuli, features) to recordings ``y``
        ((stimuli, units), (repetitions, stimuli, units), or an rsatoolbox Dataset)."""
        validate(
            {
                "n_components": Count(1),
                "n_splits": Count(1),
                "test_size": Number(0, 1, open=True),
                "scale": Flag(),
                "random_state": SEED,
            },
            self.get_params(),
        )
        features = as_matrix(X, "X")
        recordings = read_recordings(y, "y")
        if recordings.n_stimuli != features.shape[0]:
            raise ParameterError(
                "y",
                f"X and y must hold the same stimuli: {features.shape[0]} rows of features, "
                f"{recordings.n_stimuli} recorded stimuli",
            )
        splitter = ShuffleSplit(
            self.n_splits, test_size=self.test_size, random_state=self.random_state
        )
        self.splits_ = list(splitter.split(features))
        scores = []
        for train, test in self.splits_:
            if len(test) < 2:
                raise ParameterError("test_size", "test_size leaves fewer than 2 test stimuli")
            pls = self._pls(features[train]).fit(features[train], recordings.mean[train])
            scores.append(_held_out_r(pls.predict(features[test]), recordings.mean[test]))
        self.correlations_ = np.array(scores)
        self.unit_scores_ = np.nanmean(self.correlations_, axis=0)
        self.score_ = float(np.nanmedian(self.unit_scores_))
        self.ceiling_ = None
        self.ceiled_score_ = None
        if recordings.repetitions is not None:
            self.ceiling_ = split_half_ceiling(
                recordings.repetitions, self.n_splits, self.random_state
            )
            self.ceiled_score_ = self.score_ / float(np.nanmedian(self.ceiling_))
        self.estimator_ = self._pls(features).fit(features, recordings.mean)
        return self

    def predict(self, X: object) -> np.ndarray:  # noqa: N803 (scikit-learn)
        """Predicted responses (stimuli, units) of the PLS fitted on all stimuli."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(as_matrix(X, "X"))

    def score(self, X: object, y: object) -> float:  # noqa: N803 (scikit-learn)
        """The median over units of the Pearson r between :meth:`predict` and ``y``."""
        recordings = read_recordings(y, "y")
        return float(np.nanmedian(pearson_per_unit(self.predict(X), recordings.mean)))


def neural_predictivity(
    features: object, recordings: object, **params: object
) -> NeuralPredictivity:
    """How well model features predict recordings (Brain-Score's protocol).

    Parameters
    ----------
    features : array or Tensor
        (stimuli, features), e.g. from :func:`~captum_groups.neuro.features`
        for a layer, a group or a GroupSet.
    recordings : array, Tensor or rsatoolbox Dataset
        (stimuli, units), or (repetitions, stimuli, units) for the ceiling.
    **params
        :class:`NeuralPredictivity`'s parameters.

    Returns
    -------
    NeuralPredictivity
        Fitted: ``score_`` (median r), ``ceiled_score_``, ``unit_scores_`` ...

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(100, 6))
    >>> recorded = x[:, :2] @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(4, 100, 5))
    >>> found = neural_predictivity(x, recorded)
    >>> found.ceiling_.shape, found.ceiled_score_ > found.score_
    ((5,), True)
    """
    return NeuralPredictivity(**params).fit(features, recordings)  # type: ignore[arg-type]


def reverse_predictivity(
    features: object, recordings: object, **params: object
) -> NeuralPredictivity:
    """How well the recordings predict the model's units: the same protocol fitted from
    brain to model (the score is the median over model units; no ceiling).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> recorded = rng.normal(size=(100, 8))
    >>> units = recorded[:, :3] @ rng.normal(size=(3, 4))
    >>> round(reverse_predictivity(units, recorded, n_components=8).score_, 3)
    1.0
    """
    return NeuralPredictivity(**params).fit(
        read_recordings(recordings).mean, as_matrix(features, "features")
    )  # type: ignore[arg-type]
