"""A group's physiology: tuning curves to gratings (or any stimulus family) and their measures.

What a neurophysiologist measures on a V1 cell, measured on a group (Zou &
Li, arXiv 2203.13262; Marques, Schrimpf & DiCarlo, bioRxiv 2021, "Multi-scale
hierarchical neural network models that bridge from single neurons in the
primate primary visual cortex to object recognition behavior"): the
response to sinusoidal gratings as orientation or spatial frequency varies,
the preferred value, the circular variance
``CV = 1 - |sum_k r_k exp(2 pi i v_k / period)| / sum_k r_k`` (0 for a cell
that answers one orientation, 1 for one that answers all alike), the
bandwidth (half width at half height), the selectivity
``(max - min) / (max + min)`` and the sparseness of Vinje & Gallant
(Science 2000). Responses are the group's value (its weighted reduction);
the measures use them rectified (negative values count as zero), as firing
rates are.

:func:`gratings` draws the stimuli with NumPy; :func:`tuning_curve` takes
them, or any other stimulus family with one parameter value per stimulus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._io.plain_text import plain_text
from .._validation.checks import Count, Number, validate
from .._validation.deprecation import renamed_keywords
from .._validation.errors import ParameterError
from ..data import Data
from ..groups import GroupSet, NeuronGroup
from .features import features

__all__ = ["Gratings", "TuningCurve", "gratings", "tuning_curve"]


@dataclass(frozen=True)
class Gratings:
    """Sinusoidal gratings and their parameters, one entry per image.

    Attributes
    ----------
    images : Tensor
        (n, channels, size, size) float32 images, ``mean`` +- ``contrast``.
    orientation : ndarray
        Degrees in [0, 180): the direction, anticlockwise from the image's
        rows, in which luminance varies (the stripes run across it).
    frequency : ndarray
        Cycles per image side.
    phase : ndarray
        Degrees.

    Examples
    --------
    >>> found = gratings(16, orientations=[0, 45, 90], frequencies=[2], phases=1, channels=1)
    >>> found.images.shape, found.orientation.tolist(), found.frequency.tolist()
    (torch.Size([3, 1, 16, 16]), [0.0, 45.0, 90.0], [2.0, 2.0, 2.0])
    """

    images: Tensor
    orientation: np.ndarray
    frequency: np.ndarray
    phase: np.ndarray


def gratings(
    size: int,
    orientations: Sequence[float] = tuple(range(0, 180, 15)),
    frequencies: Sequence[float] = (4.0,),
    phases: int = 4,
    channels: int = 3,
    contrast: float = 1.0,
    mean: float = 0.0,
) -> Gratings:
    """Every combination of orientation, spatial frequency and phase, as images.

    Parameters
    ----------
    size : int
        Image side in pixels.
    orientations : sequence of float
        Degrees (see :class:`Gratings`).
    frequencies : sequence of float
        Cycles per image side.
    phases : int
        Phases, evenly spaced over a cycle (a tuning curve averages over them).
    channels : int
        Image channels (the same grating in each).
    contrast, mean : float
        Amplitude and mean of the luminance.

    Examples
    --------
    >>> found = gratings(16, orientations=[0, 90], frequencies=[2], phases=2, channels=1)
    >>> found.images.shape, found.orientation.tolist()
    (torch.Size([4, 1, 16, 16]), [0.0, 0.0, 90.0, 90.0])
    """
    validate(
        {
            "size": Count(2),
            "phases": Count(1),
            "channels": Count(1),
            "contrast": Number(0),
            "mean": Number(),
        },
        {"size": size, "phases": phases, "channels": channels, "contrast": contrast, "mean": mean},
    )
    for name, given in (("orientations", orientations), ("frequencies", frequencies)):
        if not all(Number().accepts(value) for value in given):
            raise ParameterError(name, f"{name} must be finite numbers, got {list(given)}")
    rows, columns = np.meshgrid(
        np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij"
    )
    table = [
        (float(o), float(f), 360.0 * p / phases)
        for o in orientations
        for f in frequencies
        for p in range(phases)
    ]
    if not table:
        raise ParameterError("orientations", "orientations and frequencies must not be empty")
    images = []
    for orientation, frequency, phase in table:
        angle = np.deg2rad(orientation)
        position = columns * np.cos(angle) - rows * np.sin(angle)
        wave = np.sin(2 * np.pi * frequency * position / size + np.deg2rad(phase))
        images.append(mean + contrast * wave)
    stack = torch.tensor(np.array(images), dtype=torch.float32)[:, None].repeat(1, channels, 1, 1)
    orientation, frequency, phase = (np.array(column) for column in zip(*table, strict=True))
    return Gratings(stack, np.mod(orientation, 180.0), frequency, phase)


@dataclass(frozen=True)
class TuningCurve:
    """A group's mean response at each value of a stimulus parameter.

    Attributes
    ----------
    values : ndarray
        The parameter's distinct values, ascending.
    responses : ndarray
        The group's mean response at each value (over the stimuli that share
        it, e.g. the phases of a grating).
    spread : ndarray
        The standard deviation over those stimuli.
    period : float or None
        The parameter's period (180 for orientation), for circular measures.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn
    >>> stimuli = gratings(8, orientations=[0, 45, 90, 135], frequencies=[2], channels=1,
    ...                    mean=8.0, contrast=8.0)
    >>> curve = tuning_curve(digits_cnn(), NeuronGroup("relu1", [3]), stimuli.images,
    ...                      stimuli.orientation, period=180)
    >>> curve.values.tolist(), curve.responses.shape, curve.period
    ([0.0, 45.0, 90.0, 135.0], (4,), 180)
    """

    values: np.ndarray
    responses: np.ndarray
    spread: np.ndarray
    period: float | None = None

    @property
    def rates(self) -> np.ndarray:
        """The responses rectified: what the measures use."""
        return np.clip(self.responses, 0.0, None)

    @property
    def preferred(self) -> float:
        """The value of the largest response."""
        return float(self.values[int(np.argmax(self.responses))])

    @property
    def circular_variance(self) -> float:
        """``1 - |sum r_k exp(2 pi i v_k / period)| / sum r_k``: 0 sharply tuned, 1 untuned."""
        if self.period is None:
            raise ValueError("circular_variance needs a periodic parameter; give period=")
        total = self.rates.sum()
        if total == 0:
            return float("nan")
        phases = np.exp(2j * np.pi * self.values / self.period)
        return float(1 - abs((self.rates * phases).sum()) / total)

    @property
    def selectivity(self) -> float:
        """``(max - min) / (max + min)`` of the rates: 0 flat, 1 silent at the worst value."""
        high, low = self.rates.max(), self.rates.min()
        return float((high - low) / (high + low)) if high + low > 0 else float("nan")

    @property
    def sparseness(self) -> float:
        """Vinje & Gallant's sparseness of the rates over values: 0 dense, 1 one value only."""
        rates, n = self.rates, len(self.rates)
        if n < 2 or not (rates**2).sum():
            return float("nan")
        activity = rates.mean() ** 2 / (rates**2).mean()
        return float((1 - activity) / (1 - 1 / n))

    @property
    def bandwidth(self) -> float:
        """Half width at half height: how far from the preferred value the response falls to
        halfway between its maximum and its minimum (averaged over both sides; linear
        interpolation between values; around the circle for a periodic parameter)."""
        peak = int(np.argmax(self.responses))
        half = (self.responses.max() + self.responses.min()) / 2
        sides = [self._half_distance(peak, step, half) for step in (-1, 1)]
        known = [d for d in sides if d is not None]
        return float(np.mean(known)) if known else float("nan")

    def _half_distance(self, peak: int, step: int, half: float) -> float | None:
        n = len(self.values)
        previous = peak
        for offset in range(1, n):
            index = peak + step * offset
            if self.period is None and not 0 <= index < n:
                return None
            index %= n
            if self.responses[index] <= half:
                r0, r1 = self.responses[previous], self.responses[index]
                fraction = (r0 - half) / (r0 - r1) if r0 != r1 else 0.0
                span = self._distance(peak, previous) + fraction * self._distance(previous, index)
                return span
            previous = index
        return None

    def _distance(self, a: int, b: int) -> float:
        gap = abs(float(self.values[b] - self.values[a]))
        return min(gap, self.period - gap) if self.period is not None else gap

    @plain_text
    def plot(self, label: str = "value", title: str | None = None) -> Figure:
        """The curve with its spread, the preferred value marked."""
        figure = Figure(figsize=(4.2, 3.0))
        axes = figure.add_subplot()
        axes.errorbar(self.values, self.responses, yerr=self.spread, marker="o", capsize=2)
        axes.axvline(self.preferred, color="red", linestyle="--", linewidth=1)
        axes.set_xlabel(label)
        axes.set_ylabel("group response")
        axes.set_title(title or f"preferred {label} {self.preferred:g}")
        figure.tight_layout()
        return figure


@renamed_keywords(stimuli="data")
def tuning_curve(
    model: nn.Module,
    group: NeuronGroup,
    data: Data,
    values: Sequence[float] | np.ndarray,
    period: float | None = None,
    batch_size: int = 256,
) -> TuningCurve:
    """A group's tuning curve over a stimulus parameter.

    Parameters
    ----------
    model : nn.Module
        The model.
    group : NeuronGroup
        The group (at its run ``call``, for a layer that runs several times).
    data : Tensor, Dataset, DataLoader or list of batches
        The stimuli, e.g. ``gratings(...).images``.
    values : sequence of float
        The parameter's value for each stimulus, e.g. ``gratings(...).orientation``;
        stimuli that share a value are averaged.
    period : float, optional
        The parameter's period (180 for orientation) for the circular measures.
    batch_size : int
        Stimuli per forward pass.

    Returns
    -------
    TuningCurve

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn
    >>> model = digits_cnn()
    >>> stimuli = gratings(8, frequencies=[2], channels=1, mean=8.0, contrast=8.0)
    >>> curve = tuning_curve(model, NeuronGroup("relu1", [3]), stimuli.images,
    ...                      stimuli.orientation, period=180)
    >>> curve.values.tolist()[:3], 0 <= curve.circular_variance <= 1
    ([0.0, 15.0, 30.0], True)
    """
    validate({"period": Number(0, open=True, optional=True)}, {"period": period})
    if not isinstance(group, NeuronGroup):
        raise ParameterError("group", f"group must be a NeuronGroup, got {type(group).__name__}")
    values = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(values).all():
        raise ParameterError("values", "values must be finite numbers (one per stimulus)")
    responses = features(model, {"group": GroupSet([group])}, data, batch_size)["group"][:, 0]
    if len(values) != len(responses):
        raise ParameterError(
            "values",
            f"values must hold one value per stimulus ({len(responses)}), got {len(values)}",
        )
    distinct = np.unique(values)
    by_value = [responses[values == v] for v in distinct]
    return TuningCurve(
        distinct,
        np.array([r.mean() for r in by_value]),
        np.array([r.std() for r in by_value]),
        period,
    )
