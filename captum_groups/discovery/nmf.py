"""Neuron groups as non-negative factors of a layer's activations (Building Blocks)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import NMF
from sklearn.utils.validation import check_is_fitted

from ..groups import GroupSet, NeuronGroup
from ._validation import check_count, check_layer_name, checked_array, count_features, neuron_axis


def _positions_by_channels(
    estimator: NMFGroups, X: object, reset: bool
) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Activations with channels on axis ``dim`` -> (N * positions, C) matrix, the shape of the
    other non-batch axes, and the channel axis. The channels are the estimator's features."""
    acts = checked_array(X)
    axis = neuron_axis(acts, estimator.dim)
    count_features(estimator, acts.shape[axis], reset)
    minimum = acts.min()
    if minimum < 0:
        raise ValueError(
            f"Negative values in data passed to {type(estimator).__name__} (min {minimum:.3g}): "
            f"NMF needs a non-negative layer, such as the output of a ReLU"
        )
    channels_last = np.moveaxis(acts, axis, -1)
    return channels_last.reshape(-1, acts.shape[axis]), channels_last.shape[1:-1], axis


class NMFGroups(TransformerMixin, BaseEstimator):
    """Neuron groups by non-negative matrix factorisation of activations.

    As in Building Blocks of Interpretability (Olah et al., Distill 2018), a
    layer's activations, one row per example and position and one column per
    channel, are factorised as ``spatial factors x components``. Each
    component is a channel direction, i.e. a weighted neuron group (unit L2
    norm). ``transform`` gives each example's spatial factors. (N, C, H, W)
    activations are taken as they are; no permute to channels-last is needed.
    Channels-last activations, such as a sequence layer's (N, T, F), take
    ``dim=-1``: the channels are then read from the last axis, not the tokens.

    Parameters
    ----------
    layer : str, optional
        The name of the layer, used to build ``groups_`` (a name, not a
        module, so that ``clone`` does not copy the model).
    n_components : int
        Number of groups.
    init : str
        scikit-learn NMF initialisation.
    max_iter : int
        Iterations of the NMF solver.
    tol : float
        Tolerance of the NMF solver.
    random_state : int, optional
        Seed of the initialisation.
    min_weight : float
        A channel joins a component's group when its weight is at least this
        fraction of the component's largest weight (``components_`` keeps
        all weights).
    dim : int
        Axis of the activations that holds the channels (1, or -1 for
        channels-last); the groups get the same ``dim``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, C)
        Unit-norm channel directions.
    groups_ : GroupSet or None
        One weighted group per component (its channels above ``min_weight``);
        None without a ``layer``.
    reconstruction_err_ : float
        Frobenius norm of the residual.
    n_iter_ : int
        Iterations the NMF solver ran.
    n_features_in_ : int
        Number of channels C seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> directions = np.array([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    >>> acts = np.einsum("nkhw,kc->nchw", rng.random((50, 2, 3, 3)), directions)
    >>> nmf = NMFGroups("relu3", n_components=2, random_state=0).fit(acts)
    >>> sorted(g.indices for g in nmf.groups_)
    [(0, 1), (2, 3)]
    >>> nmf.transform(acts).shape
    (50, 2, 3, 3)
    """

    def __init__(
        self,
        layer: str | None = None,
        n_components: int = 8,
        init: str = "nndsvda",
        max_iter: int = 1000,
        tol: float = 1e-5,
        random_state: int | None = None,
        min_weight: float = 0.05,
        dim: int = 1,
    ) -> None:
        self.layer = layer
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.min_weight = min_weight
        self.dim = dim

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def fit(self, X: object, y: object = None) -> NMFGroups:
        """Factorise activations X, shaped (N, C) or (N, C, H, W) (see ``dim``), non-negative."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X: object, y: object = None) -> np.ndarray:
        """Fit, and return the spatial factors of X: shaped like X, with the n_components
        factors on the channel axis, e.g. (N, n_components, H, W)."""
        check_layer_name(self.layer)
        if not 0 <= self.min_weight <= 1:
            raise ValueError(f"min_weight must be in [0, 1], got {self.min_weight!r}")
        matrix, spatial, axis = _positions_by_channels(self, X, reset=True)
        check_count(self.n_components, "n_components", 1, matrix.shape[1])
        self.nmf_ = NMF(
            self.n_components,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        factors = self.nmf_.fit_transform(matrix)
        norms = np.linalg.norm(self.nmf_.components_, axis=1)
        norms[norms == 0] = 1.0
        self._norms = norms
        self.components_ = self.nmf_.components_ / norms[:, None]
        self.reconstruction_err_ = float(self.nmf_.reconstruction_err_)
        self.n_iter_ = self.nmf_.n_iter_
        self.groups_ = (
            None
            if self.layer is None
            else GroupSet(self._group(i, c) for i, c in enumerate(self.components_))
        )
        return self._spatial(factors * norms, spatial, axis)

    def transform(self, X: object) -> np.ndarray:
        """Spatial factors of X, shaped like X with n_components on the channel axis."""
        check_is_fitted(self)
        matrix, spatial, axis = _positions_by_channels(self, X, reset=False)
        factors = self.nmf_.transform(matrix) * self._norms
        return self._spatial(factors, spatial, axis)

    def _group(self, index: int, component: np.ndarray) -> NeuronGroup:
        """The weighted group of one component: its channels above ``min_weight``."""
        largest = component.max()
        keep = np.flatnonzero(component >= self.min_weight * largest) if largest > 0 else [0]
        return NeuronGroup(
            self.layer, keep, weights=component[keep], name=f"nmf{index}", dim=self.dim
        )

    @staticmethod
    def _spatial(factors: np.ndarray, spatial: tuple[int, ...], axis: int) -> np.ndarray:
        """(N * positions, K) factors -> shaped like the activations, K on the channel axis."""
        return np.moveaxis(factors.reshape(-1, *spatial, factors.shape[1]), -1, axis)
