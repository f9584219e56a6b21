"""Input checks shared by the grouping estimators, as scikit-learn's own estimators check."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_array
from torch import Tensor

from .._validation.checks import Count, ParameterError


def checked_array(X: object, min_samples: int = 1) -> np.ndarray:
    """X (a tensor or array-like) as a float64 array of two or more axes, checked as
    scikit-learn's ``check_array`` checks it: not empty, finite, numeric, real."""
    if isinstance(X, Tensor):
        X = X.detach().cpu().numpy()
    return check_array(
        X, allow_nd=True, dtype=np.float64, ensure_min_samples=min_samples, input_name="X"
    )


def neuron_axis(array: np.ndarray, dim: object, name: str = "X") -> int:
    """The axis of ``array`` (batch first) that holds the neurons, from ``dim``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim == 0:
        raise ValueError(f"dim must be a non-zero int (axis 0 is the examples), got {dim!r}")
    axis = int(dim) if dim > 0 else array.ndim + int(dim)
    if not 1 <= axis < array.ndim:
        raise ValueError(f"dim={dim} is not an axis of {name} shaped {array.shape}")
    return axis


def count_features(estimator: BaseEstimator, n_features: int, reset: bool) -> None:
    """Record ``n_features_in_`` (``reset``, in fit) or check X against it (after fit), with
    scikit-learn's message."""
    if reset:
        estimator.n_features_in_ = n_features
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )


def per_neuron(
    estimator: BaseEstimator, X: object, dim: int, reset: bool, min_samples: int = 1
) -> np.ndarray:
    """(N, C) activations: the neuron axis ``dim`` kept (its size is the estimator's
    ``n_features_in_``), the other axes averaged."""
    array = checked_array(X, min_samples)
    moved = np.moveaxis(array, neuron_axis(array, dim), 1)
    count_features(estimator, moved.shape[1], reset)
    return moved.reshape(moved.shape[0], moved.shape[1], -1).mean(2)


def check_count(value: int | None, name: str, low: int, high: int) -> None:
    """None, or an int in [low, high] (NumPy ints too, as scikit-learn accepts them)."""
    if isinstance(value, np.integer):
        value = int(value)
    if value is None:
        return
    if not Count(low).accepts(value) and not isinstance(value, int):
        raise ParameterError(name, f"{name} must be an int or None, got {value!r}")
    if not Count(low, high).accepts(value):
        raise ParameterError(name, f"{name} must be between {low} and {high} here, got {value}")


def check_layer_name(layer: object) -> None:
    """A grouping estimator's ``layer``: a layer name (or None), never a module, so that
    ``clone`` copies a string and not the model's module."""
    if layer is not None and not isinstance(layer, str):
        raise TypeError(
            f"layer must be the layer's dotted name (e.g. 'layer3.1') or None, got "
            f"{type(layer).__name__}; give the name, so that clone() does not copy a module"
        )
