"""Recordings as the neuro functions read them: stimuli x units, with optional repetitions.

Recordings come as a NumPy array or a torch tensor, (stimuli, units), or
(repetitions, stimuli, units) when each stimulus was shown several times (the
split-half noise ceiling needs the repetitions), or as an rsatoolbox
``Dataset`` whose rows are observations: one per stimulus, or several per
stimulus when its observation descriptor ``stimulus`` repeats (rows are then
grouped into repetitions, by its ``repetition`` descriptor where it has one,
else in the order they were presented).

Stimuli are matched by identity, not by position. A ``Dataset`` with a
``stimulus`` descriptor orders its stimuli as rsatoolbox's
``calc_rdm(descriptor="stimulus")`` does, by the descriptor's sorted values,
and the recordings remember those identifiers; model features given with
``stimulus_ids`` are then reordered to them (:func:`aligned_rows`). Plain
arrays carry no identifiers: their rows are the stimuli, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from .._validation.errors import ParameterError

__all__ = ["Recordings", "aligned_rows", "as_matrix", "read_recordings"]


@dataclass(frozen=True)
class Recordings:
    """Responses to a set of stimuli.

    Attributes
    ----------
    mean : ndarray
        (stimuli, units): the response to each stimulus, averaged over repetitions.
    repetitions : ndarray or None
        (repetitions, stimuli, units), when repetitions were given.
    stimuli : ndarray or None
        The stimuli's identifiers in the order of the rows, when the
        recordings carry them (an rsatoolbox ``Dataset``'s ``stimulus``
        descriptor, sorted as rsatoolbox sorts it).
    """

    mean: np.ndarray
    repetitions: np.ndarray | None = None
    stimuli: np.ndarray | None = None

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
    try:
        # rsatoolbox's calc_rdm(descriptor=...) returns the stimuli in sorted order
        order, inverse = np.unique(np.asarray(stimulus), return_inverse=True)
    except TypeError:
        raise ParameterError(
            parameter,
            f"{parameter}: the 'stimulus' descriptor must hold values of one sortable type, "
            "as rsatoolbox orders stimuli by them",
        ) from None
    rows = [np.flatnonzero(inverse == i) for i in range(len(order))]
    counts = {len(r) for r in rows}
    if len(counts) != 1:
        raise ParameterError(
            parameter,
            f"{parameter}: every stimulus must be recorded the same number of times to form "
            f"repetitions; got {sorted(counts)} rows per stimulus",
        )
    descriptors = dataset.obs_descriptors  # type: ignore[attr-defined]
    if "repetition" in descriptors:
        rows = _by_repetition(rows, np.asarray(descriptors["repetition"]), parameter)
    repetitions = np.stack([measurements[r] for r in rows], axis=1)
    return _with_repetitions(repetitions, order)


def _by_repetition(rows: list[np.ndarray], repetition: np.ndarray, parameter: str) -> list:
    """Each stimulus's rows ordered by the ``repetition`` descriptor, so that repetition k
    is the same presentation for every stimulus (the ceiling's halvings split
    repetitions, as Brain-Score splits its ``repetition`` coordinate); without it,
    rows keep the order they were presented in."""
    labels = [np.sort(repetition[r]) for r in rows]
    if any(not np.array_equal(labels[0], other) for other in labels[1:]):
        raise ParameterError(
            parameter,
            f"{parameter}: the 'repetition' descriptor must give every stimulus the same "
            "repetitions",
        )
    return [r[np.argsort(repetition[r], kind="stable")] for r in rows]


def _with_repetitions(repetitions: np.ndarray, stimuli: np.ndarray | None = None) -> Recordings:
    if repetitions.shape[0] < 2:
        return Recordings(repetitions[0], stimuli=stimuli)
    return Recordings(repetitions.mean(0), repetitions, stimuli)


def aligned_rows(
    recordings: Recordings, n_rows: int, stimulus_ids: object, rows: str, recorded: str
) -> np.ndarray:
    """The rows of a feature matrix (``n_rows`` of them; the parameter ``rows``) that hold
    each stimulus of ``recordings`` (the parameter ``recorded``), in the recordings' order.

    Without ``stimulus_ids`` the rows are taken as they are (one per recorded
    stimulus, in order; another count is refused by ``recorded``); with them,
    each recorded stimulus's row is found by its identifier. A stimulus
    missing from either side, repeated identifiers, or identifiers with
    recordings that carry none are refused by ``stimulus_ids``.

    Examples
    --------
    >>> found = Recordings(np.zeros((2, 1)), stimuli=np.array(["a", "b"]))
    >>> aligned_rows(found, 2, ["b", "a"], "features", "recordings")
    array([1, 0])
    """
    parameter = "stimulus_ids"
    if stimulus_ids is None:
        if n_rows != recordings.n_stimuli:
            raise ParameterError(
                recorded,
                f"{rows} and {recorded} must hold the same stimuli: {n_rows} rows of "
                f"{rows}, {recordings.n_stimuli} recorded stimuli in {recorded}",
            )
        return np.arange(n_rows)
    ids = np.asarray(stimulus_ids)
    if ids.ndim != 1 or len(ids) != n_rows:
        raise ParameterError(
            parameter, f"{parameter} must name each of the {n_rows} rows of {rows}, got {ids.shape}"
        )
    if recordings.stimuli is None:
        raise ParameterError(
            parameter,
            f"{parameter} aligns {rows} with the recordings by identity, but the recordings "
            "carry no identifiers: give them as an rsatoolbox Dataset with a 'stimulus' "
            f"descriptor, or leave {parameter} out and order the rows alike",
        )
    position = {value: i for i, value in enumerate(ids.tolist())}
    if len(position) != len(ids):
        raise ParameterError(parameter, f"{parameter} names a stimulus twice")
    missing = [s for s in recordings.stimuli.tolist() if s not in position]
    extra = set(position) - set(recordings.stimuli.tolist())
    if missing or extra:
        raise ParameterError(
            parameter,
            f"{parameter} and the recordings must hold the same stimuli: recorded but not in "
            f"{rows}: {missing[:5]}, in {rows} but not recorded: {sorted(map(str, extra))[:5]}",
        )
    return np.array([position[s] for s in recordings.stimuli.tolist()])


def read_recordings(recordings: object, parameter: str = "recordings") -> Recordings:
    """Recordings from an array, a tensor or an rsatoolbox ``Dataset`` (see the module).

    Examples
    --------
    >>> found = read_recordings(np.zeros((3, 10, 5)))  # 3 repetitions of 10 stimuli
    >>> found.mean.shape, found.repetitions.shape
    ((10, 5), (3, 10, 5))
    """
    if isinstance(recordings, Recordings):  # read already (e.g. once per area)
        return recordings
    if hasattr(recordings, "measurements"):
        return _from_rsatoolbox(recordings, parameter)
    if isinstance(recordings, (Tensor, np.ndarray)) and recordings.ndim == 3:
        values = as_matrix(recordings.reshape(-1, recordings.shape[-1]), parameter)
        return _with_repetitions(values.reshape(recordings.shape))
    if isinstance(recordings, (Tensor, np.ndarray)) and recordings.ndim > 3:
        raise ParameterError(
            parameter,
            f"{parameter} must be (stimuli, units) or (repetitions, stimuli, units), got shape "
            f"{tuple(recordings.shape)}",
        )
    return Recordings(as_matrix(recordings, parameter))
