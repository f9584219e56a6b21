"""Shared input checks for the grouping estimators."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def as_array(X: object, name: str = "X") -> np.ndarray:
    """A float64 NumPy array from a tensor or array-like, checked to be finite."""
    if isinstance(X, Tensor):
        X = X.detach().cpu().numpy()
    array = np.asarray(X, dtype=np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def per_neuron(X: object, name: str = "X") -> np.ndarray:
    """(N, C) activations: (N, C, ...) outputs are reduced by their spatial mean."""
    array = as_array(X, name)
    if array.ndim < 2:
        raise ValueError(
            f"{name} must be activations shaped (N, C) or (N, C, ...), got {array.shape}"
        )
    return array.reshape(array.shape[0], array.shape[1], -1).mean(2)


def check_count(value: int | None, name: str, low: int, high: int) -> None:
    """None, or an int in [low, high]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int or None, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} here, got {value}")
