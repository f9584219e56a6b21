"""Functional localizers: the units of a layer selective for a contrast of stimuli.

The fMRI localizer of neuroscience (a face area is where faces evoke more
than objects), applied to model units as AlKhamissi et al. (arXiv
2411.02280) do for language models: a Welch t-test per unit between its
responses to the positive and to the negative stimuli; the units with the
largest positive t form the "area", kept either as a top fraction or by a
Benjamini-Hochberg false-discovery-rate threshold. The result is a weighted
:class:`~captum_groups.NeuronGroup` (weights: the t values), so it can be
attributed, drawn, mined, or lesioned with :func:`~captum_groups.ablate`.

A unit is a neuron of the layer: a channel of a conv layer (its spatial
mean, as everywhere in the package) or a unit of a linear layer.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from torch import nn

from .._model.guards import guarded_call
from .._validation.checks import CALL, Count, Number, validate
from .._validation.errors import ParameterError
from ..data import Data
from ..groups import Layer, NeuronGroup, layer_name, neuron_means, resolve_layer
from .features import collect

__all__ = ["localize", "welch_t"]


def welch_t(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch's t and its two-sided p value per unit (columns), positive minus negative.

    Examples
    --------
    >>> t, p = welch_t(np.array([[2.0], [2.2], [1.9]]), np.array([[0.0], [0.3], [0.1]]))
    >>> bool(t[0] > 10), bool(p[0] < 0.001)
    (True, True)
    """
    t, p = stats.ttest_ind(positive, negative, axis=0, equal_var=False)
    return np.nan_to_num(t, nan=0.0), np.nan_to_num(p, nan=1.0)


def localize(
    model: nn.Module,
    layer: Layer,
    positive: Data,
    negative: Data,
    fraction: float | None = 0.1,
    fdr: float | None = None,
    dim: int = 1,
    call: int | None = None,
    batch_size: int = 256,
    name: str = "localizer",
) -> NeuronGroup:
    """The units of ``layer`` that respond more to ``positive`` than to ``negative``.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : str or nn.Module
        The layer whose units to test.
    positive, negative : Tensor, Dataset, DataLoader or list of batches
        The two stimulus sets of the contrast (e.g. faces and objects).
    fraction : float, optional
        Keep this fraction of the units, those of largest t (at least one).
    fdr : float, optional
        Instead of ``fraction``: keep every unit with t > 0 whose
        Benjamini-Hochberg adjusted p value is below ``fdr``.
    dim : int
        The layer output's neuron axis (1; -1 for channels-last sequences).
    call : int, optional
        The run of a layer that runs several times per forward pass.
    batch_size : int
        Stimuli per forward pass.
    name : str
        The group's name.

    Returns
    -------
    NeuronGroup
        The selective units, largest t first, weighted by their t values.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> zeros = localize(model, "relu3", x[y == 0], x[y != 0], fraction=0.1)
    >>> len(zeros), zeros.name, min(zeros.weights) > 0
    (6, 'localizer', True)
    """
    validate(
        {
            "fraction": Number(0, 1, open=True, optional=True),
            "fdr": Number(0, 1, open=True, optional=True),
            "call": CALL,
            "batch_size": Count(1),
        },
        {"fraction": fraction, "fdr": fdr, "call": call, "batch_size": batch_size},
    )
    if fdr is not None:
        fraction = None
    if fraction is None and fdr is None:
        raise ParameterError("fraction", "give fraction (a top fraction of units) or fdr")
    module = resolve_layer(model, layer)
    with guarded_call(model, "localize"):  # one call: one training-mode warning, not two
        responses = [
            _unit_responses(model, module, stimuli, dim, call, batch_size, parameter)
            for stimuli, parameter in ((positive, "positive"), (negative, "negative"))
        ]
    t, p = welch_t(*responses)
    if fraction is not None:
        count = max(1, int(round(fraction * len(t))))
        chosen = np.argsort(-t, kind="stable")[:count]
        chosen = chosen[t[chosen] > 0]
    else:
        adjusted = stats.false_discovery_control(p)
        chosen = np.flatnonzero((adjusted < fdr) & (t > 0))
        chosen = chosen[np.argsort(-t[chosen], kind="stable")]
    if not len(chosen):
        raise ValueError(
            f"no unit of layer {layer_name(model, module)!r} responds more to positive than to "
            f"negative stimuli" + (f" at fdr={fdr}" if fdr is not None else "")
        )
    return NeuronGroup(layer_name(model, module), chosen, t[chosen], name=name, dim=dim, call=call)


def _unit_responses(
    model: nn.Module,
    module: nn.Module,
    stimuli: Data,
    dim: int,
    call: int | None,
    batch_size: int,
    parameter: str,
) -> np.ndarray:
    """Each unit's response to each stimulus, (stimuli, units): its spatial mean."""
    reader = (module, call, lambda output: neuron_means(output, dim))
    return collect(model, {parameter: reader}, stimuli, batch_size, parameter, "localize")[
        parameter
    ]
