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


def neuron_axis(array: np.ndarray, dim: object, name: str = "X") -> int:
    """The axis of ``array`` (batch first) that holds the neurons, from ``dim``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim == 0:
        raise ValueError(f"dim must be a non-zero int (axis 0 is the examples), got {dim!r}")
    axis = int(dim) if dim > 0 else array.ndim + int(dim)
    if not 1 <= axis < array.ndim:
        raise ValueError(f"dim={dim} is not an axis of {name} shaped {array.shape}")
    return axis


def per_neuron(X: object, name: str = "X", dim: int = 1) -> np.ndarray:
    """(N, C) activations: the neuron axis ``dim`` kept, the other axes averaged."""
    array = as_array(X, name)
    if array.ndim < 2:
        raise ValueError(
            f"{name} must be activations shaped (N, C) or (N, C, ...), got {array.shape}"
        )
    moved = np.moveaxis(array, neuron_axis(array, dim, name), 1)
    return moved.reshape(moved.shape[0], moved.shape[1], -1).mean(2)


def check_count(value: int | None, name: str, low: int, high: int) -> None:
    """None, or an int in [low, high]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int or None, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} here, got {value}")
