"""What a model "records" on a set of stimuli: the features of a layer, a group or a GroupSet.

The neuro functions compare model units with brain recordings on the same
stimuli, as (stimuli x units) matrices. A model source gives such a matrix:

- a layer (dotted name or module): its output, flattened per stimulus (the
  Brain-Score convention: every neuron at every position is a unit);
- a :class:`~captum_groups.NeuronGroup`: its member neurons, each reduced as
  the group reduces them (spatial mean by default): a small population;
- a :class:`~captum_groups.GroupSet`: one unit per group, the group's value;
- an array or tensor (stimuli x units): taken as it is.

A group that names a run of its layer (``call=t``) reads that run; a layer
given by name must run once per forward pass (``call`` picks a run for all
layers given by name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._model.capture import LayerCapture, record
from .._model.guards import guarded_call
from .._validation.checks import Count, validate
from .._validation.deprecation import renamed_keywords
from .._validation.errors import ParameterError
from ..data import Data, iter_batches
from ..groups import GroupSet, Layer, NeuronGroup, layer_name, resolve_layer
from ._recordings import as_matrix

__all__ = ["Reader", "Source", "collect", "features", "source_label"]

Source = Layer | NeuronGroup | GroupSet | np.ndarray | Tensor
"""A model source of (stimuli x units) features (see the module)."""

Reader = tuple[nn.Module, int | None, Callable[[Tensor], Tensor]]
"""(module, run, what to compute from that run's output): one (stimuli x units) matrix."""


def source_label(model: nn.Module | None, source: object) -> str:
    """A short name for a source: the layer's name, the group's name or its layer and
    indices, ``"array"`` for given features.

    Examples
    --------
    >>> source_label(None, NeuronGroup("relu3", [1, 2], name="loops", call=1))
    'loops'
    >>> source_label(None, NeuronGroup("relu3", [1, 2], call=1))
    'relu3[1, 2]@1'
    """
    if isinstance(source, NeuronGroup):
        if source.name:
            return source.name
        where = layer_name(model, source.layer)
        shown = list(source.indices[:6]) + (["..."] if len(source) > 6 else [])
        text = f"{where}[{', '.join(map(str, shown))}]"
        return text if source.call is None else f"{text}@{source.call}"
    if isinstance(source, GroupSet):
        call = "" if source.call is None else f"@{source.call}"
        return f"{layer_name(model, source.layer)} groups{call}"
    if isinstance(source, (str, nn.Module)):
        return layer_name(model, source)
    return "array"


def _reader(model: nn.Module, source: object, call: int | None) -> Reader:
    """(module, run, what to compute from its output) for a model source."""
    if isinstance(source, NeuronGroup):
        return source.resolve(model), source.call, source.neuron_activations
    if isinstance(source, GroupSet):
        module = resolve_layer(model, source.layer, "source")
        return module, source.call, lambda out: torch.stack([g(out) for g in source], 1)
    if isinstance(source, (str, nn.Module)):
        return resolve_layer(model, source, "source"), call, lambda out: out.flatten(1)
    raise ParameterError(
        "source",
        f"a source must be a layer (name or module), a NeuronGroup, a GroupSet or an array of "
        f"features; got {type(source).__name__}",
    )


@renamed_keywords(stimuli="data")
def features(
    model: nn.Module | None,
    sources: Source | Sequence[Source] | Mapping[str, Source],
    data: Data | None = None,
    batch_size: int = 256,
    call: int | None = None,
) -> np.ndarray | dict[str, np.ndarray]:
    """The (stimuli x units) features of one or several model sources, in one pass over
    the stimuli.

    Parameters
    ----------
    model : nn.Module or None
        The model (None when every source is an array).
    sources : source, sequence of sources, or mapping of name to source
        Layers, groups, GroupSets or arrays (see the module).
    data : Tensor, Dataset, DataLoader or list of batches
        The stimuli, read by the package's one data rule; not needed when
        every source is an array.
    batch_size : int
        Stimuli per forward pass.
    call : int, optional
        The run of layers given by name that run several times per pass.

    Returns
    -------
    ndarray, or dict of str to ndarray
        float64 (stimuli, units); a dict keyed by ``source_label`` (or the
        mapping's names) when several sources were given.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> found = features(model, ["relu2", NeuronGroup("relu3", [0, 5], name="g")], x[:20])
    >>> {name: value.shape for name, value in found.items()}
    {'relu2': (20, 2048), 'g': (20, 2)}
    """
    validate({"batch_size": Count(1), "call": Count(0, optional=True)}, locals())
    single = isinstance(sources, (str, nn.Module, NeuronGroup, GroupSet, np.ndarray, Tensor))
    if not single and not isinstance(sources, (Mapping, Sequence)):
        raise ParameterError(
            "sources",
            f"sources must be a layer, a NeuronGroup, a GroupSet, an array, or a sequence or "
            f"mapping of them; got {type(sources).__name__}",
        )
    named = (
        dict(sources)
        if isinstance(sources, Mapping)
        else {source_label(model, s): s for s in ([sources] if single else list(sources))}
    )
    if not named:
        raise ParameterError("sources", "sources is empty; give at least one source")
    given = {k: as_matrix(v, k) for k, v in named.items() if isinstance(v, (np.ndarray, Tensor))}
    wanted = {k: v for k, v in named.items() if k not in given}
    if wanted:
        if not isinstance(model, nn.Module):
            raise ParameterError("model", "model must be an nn.Module to read layers and groups")
        given.update(_model_features(model, wanted, data, batch_size, call))
    result = {name: given[name] for name in named}
    return next(iter(result.values())) if single else result


def _model_features(
    model: nn.Module, sources: dict[str, object], stimuli: Data, batch_size: int, call: int | None
) -> dict[str, np.ndarray]:
    readers = {name: _reader(model, source, call) for name, source in sources.items()}
    return collect(model, readers, stimuli, batch_size)


@renamed_keywords(stimuli="data")
def collect(
    model: nn.Module,
    readers: Mapping[str, Reader],
    data: Data,
    batch_size: int,
    parameter: str = "data",
    caller: str = "features",
) -> dict[str, np.ndarray]:
    """Each reader's matrix, in one forward pass per batch of ``data``, with one capture
    per (module, run) however many readers share it; a module that runs several times
    with no run named is refused (its calls listed)."""
    if data is None:
        raise ParameterError(
            parameter, f"{parameter} are needed to read a model's layers and groups"
        )
    parts: dict[str, list[Tensor]] = {name: [] for name in readers}
    with guarded_call(model, caller), torch.no_grad():
        for batch in iter_batches(data, batch_size, parameter):
            if not len(batch):
                continue
            captures = {
                (module, run): LayerCapture(module, call=run, model=model)
                for module, run, _ in readers.values()
            }
            record(model, batch, list(captures.values()))
            for name, (module, run, compute) in readers.items():
                output = captures[(module, run)].output[0]
                parts[name].append(compute(output).double().cpu())
    if not any(parts.values()):
        raise ParameterError(parameter, f"{parameter} are empty; give at least two stimuli")
    return {name: as_matrix(torch.cat(chunks), name) for name, chunks in parts.items()}
