"""Recordings as the neuro functions read them: stimuli x units, with optional repetitions.

Recordings come as a NumPy array or a torch tensor, (stimuli, units), or
(repetitions, stimuli, units) when each stimulus was shown several times (the
split-half noise ceiling needs the repetitions), or as an rsatoolbox
``Dataset`` whose rows are observations: one per stimulus, or several per
stimulus when its observation descriptor ``stimulus`` repeats (rows are then
grouped into repetitions, in order of first appearance of each stimulus).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from .._errors import ParameterError

__all__ = ["Recordings", "as_matrix", "read_recordings"]


@dataclass(frozen=True)
class Recordings:
    """Responses to a set of stimuli.

    Attributes
    ----------
    mean : ndarray
        (stimuli, units): the response to each stimulus, averaged over repetitions.
    repetitions : ndarray or None
        (repetitions, stimuli, units), when repetitions were given.
    """

    mean: np.ndarray
    repetitions: np.ndarray | None = None

    @property
    def n_stimuli(self) -> int:
        """How many stimuli."""
        return self.mean.shape[0]


def as_matrix(values: object, parameter: str) -> np.ndarray:
    """``values`` as a finite float64 matrix (rows: stimuli; columns: units or features).

    Tensors are detached and moved to the CPU; arrays of more than two axes
    keep their first axis and flatten the rest (a conv layer's output).

    Examples
    --------
    >>> as_matrix(np.ones((4, 2, 3)), "x").shape
    (4, 6)
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    if not isinstance(values, np.ndarray):
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(
                parameter,
                f"{parameter} must be an array or a tensor (stimuli x units), got "
                f"{type(values).__name__}",
            ) from None
    if values.dtype.kind not in "biuf":
        raise ParameterError(parameter, f"{parameter} must hold numbers, got dtype {values.dtype}")
    if values.ndim < 2:
        raise ParameterError(
            parameter,
            f"{parameter} must have a stimulus axis and a unit axis (stimuli x units), got "
            f"shape {values.shape}",
        )
    matrix = values.reshape(values.shape[0], -1).astype(np.float64)
    if matrix.shape[0] < 2 or matrix.shape[1] < 1:
        raise ParameterError(
            parameter, f"{parameter} needs at least two stimuli and one unit, got {values.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ParameterError(parameter, f"{parameter} contain NaN or infinite values")
    return matrix


def _from_rsatoolbox(dataset: object, parameter: str) -> Recordings:
    measurements = as_matrix(dataset.measurements, parameter)  # type: ignore[attr-defined]
    stimulus = (getattr(dataset, "obs_descriptors", None) or {}).get("stimulus")
    if stimulus is None:
        return Recordings(measurements)
    stimulus = np.asarray(stimulus)
    order = list(dict.fromkeys(stimulus.tolist()))
    rows = [np.flatnonzero(stimulus == s) for s in order]
    counts = {len(r) for r in rows}
    if len(counts) != 1:
        raise ParameterError(
            parameter,
            f"{parameter}: every stimulus must be recorded the same number of times to form "
            f"repetitions; got {sorted(counts)} rows per stimulus",
        )
    repetitions = np.stack([measurements[r] for r in rows], axis=1)
    return _with_repetitions(repetitions, parameter)


def _with_repetitions(repetitions: np.ndarray, parameter: str) -> Recordings:
    if repetitions.shape[0] < 2:
        return Recordings(repetitions[0])
    return Recordings(repetitions.mean(0), repetitions)


def read_recordings(recordings: object, parameter: str = "recordings") -> Recordings:
    """Recordings from an array, a tensor or an rsatoolbox ``Dataset`` (see the module).

    Examples
    --------
    >>> found = read_recordings(np.zeros((3, 10, 5)))  # 3 repetitions of 10 stimuli
    >>> found.mean.shape, found.repetitions.shape
    ((10, 5), (3, 10, 5))
    """
    if hasattr(recordings, "measurements"):
        return _from_rsatoolbox(recordings, parameter)
    if isinstance(recordings, (Tensor, np.ndarray)) and recordings.ndim == 3:
        values = as_matrix(recordings.reshape(-1, recordings.shape[-1]), parameter)
        return _with_repetitions(values.reshape(recordings.shape), parameter)
    if isinstance(recordings, (Tensor, np.ndarray)) and recordings.ndim > 3:
        raise ParameterError(
            parameter,
            f"{parameter} must be (stimuli, units) or (repetitions, stimuli, units), got shape "
            f"{tuple(recordings.shape)}",
        )
    return Recordings(as_matrix(recordings, parameter))
