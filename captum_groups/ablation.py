"""Switching neuron groups off (ablation) or keeping only them (retention).

Ablation is the causal check every fidelity metric rests on: NeurFlow (Cao
et al., ICLR 2025) masks a circuit's core neurons, or everything but them,
and watches the class accuracy.

Both functions return a context manager: inside the ``with`` block the
chosen neurons of each layer are replaced, in every forward pass, by a value
(zero, their mean over a data set, or given numbers). On exit, also after an
error, the model is exactly as before. The replacement is not in place and
is differentiable, so gradients flow through ablated models.

A group that names a run of its layer (``NeuronGroup(..., call=t)``, for a
module that runs several times in one forward pass, as a recurrent cell
does) is ablated in that run only; a group without ``call`` in every run.

Mistakes that would make an ablation silently do nothing are refused: a
group of a module that is not part of the model (e.g. of a copy of it), a
layer that never runs while the model runs inside the block, and entering
the same ablation twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._model.capture import LayerCapture, not_run, on_this_thread, record
from ._model.guards import guarded_call
from ._validation.checks import ParameterError, check_finite
from .data import Data, iter_batches
from .groups import GroupsLike, NeuronGroup, as_group_list, common_call, layer_name

__all__ = ["ablate", "retain", "Ablation"]  # masked_output: a helper of the package

Value = Literal["zero", "mean", "position_mean"] | float | Tensor


def _groups_by_layer(model: nn.Module, groups: GroupsLike) -> dict[nn.Module, list[NeuronGroup]]:
    by_layer: dict[nn.Module, list[NeuronGroup]] = {}
    for group in as_group_list(groups):
        by_layer.setdefault(group.resolve(model), []).append(group)
    return by_layer


def check_value(value: Value, data: object) -> None:
    """Raise a clear error for an unknown or non-finite ablation value, or ``"mean"`` without
    data."""
    if isinstance(value, str):
        if value not in ("zero", "mean", "position_mean"):
            raise ValueError(
                f"value must be 'zero', 'mean', a number or a tensor, or 'position_mean' (the "
                f"mean at each position), got {value!r}"
            )
        if value != "zero" and data is None:
            raise ValueError(
                f"value={value!r} needs data: pass the examples to average activations over"
            )
        return
    if isinstance(value, Tensor):
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError("value holds NaN or infinite entries; ablation values must be finite")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be 'zero', 'mean', a number or a tensor, got {value!r}")
    check_finite(value, "value")


def channel_axis(groups: list[NeuronGroup], output: Tensor, module: nn.Module | None = None) -> int:
    """The channel axis the groups of one layer share, after checking them against ``output``
    (of ``module``, where known)."""
    for group in groups:
        group.validate_output(output, module)
    axis = groups[0].channel_axis(output.ndim)
    if any(g.channel_axis(output.ndim) != axis for g in groups):
        raise ValueError("groups of one layer must share the channel axis (dim) to be ablated")
    return axis


def element_mask(groups: Iterable[NeuronGroup], output: Tensor) -> Tensor:
    """Boolean mask, shaped ``output.shape[1:]``, of the elements any of the groups selects:
    every position of its neurons, or only the position its reduction names (a head at one
    token, one attention-pattern entry)."""
    mask = torch.zeros(output.shape[1:], dtype=torch.bool, device=output.device)
    for group in groups:
        # unit weights: a member with weight 0 (an NMF direction's zero) is still a member
        mask |= group.replace(weights=None).membership(output) != 0
    return mask


def fill_value(value: Value, mean: Tensor | None, output: Tensor, axis: int, layer: str) -> Tensor:
    """What ablated neurons output, broadcastable against ``output`` (channel axis ``axis``)."""
    shape = [1] * output.ndim
    shape[axis] = output.shape[axis]
    if isinstance(value, str):
        if value == "zero":
            return torch.zeros((), dtype=output.dtype, device=output.device)
        if value == "position_mean":
            if mean.shape != output.shape[1:]:
                raise ParameterError(
                    "value",
                    f"value='position_mean' holds layer {layer!r}'s mean at each of "
                    f"{tuple(mean.shape)} positions, but the run gives {tuple(output.shape[1:])}"
                    f"; give data of the same length as the inputs",
                )
            return mean.to(output.device, output.dtype)[None]
        return mean.to(output.dtype).view(shape)
    fill = torch.as_tensor(value, dtype=output.dtype, device=output.device)
    if fill.ndim == 1:
        if fill.shape[0] != output.shape[axis]:
            raise ValueError(
                f"value has {fill.shape[0]} entries; a tensor value needs one per neuron of "
                f"layer {layer!r} ({output.shape[axis]})"
            )
        fill = fill.view(shape)
    elif fill.ndim != 0:
        raise ValueError("value must be a number or a 1-d tensor with one entry per neuron")
    return fill


def mean_activations(
    model: nn.Module,
    layers: dict[nn.Module, list[NeuronGroup]],
    data: Data,
    per_position: bool = False,
) -> dict[nn.Module, Tensor]:
    """Per-neuron mean activation (over examples and positions) of each layer over ``data``;
    with ``per_position``, the mean over examples only, one per element of the output.

    ``data`` is read by the package's one rule (:mod:`captum_groups.data`). Empty data
    and data that gives NaN or infinite activations are refused. The mean is taken at the
    run of the layer its groups name (``call``), or over all its runs when they name none.
    """
    sums: dict[nn.Module, Tensor] = {}
    counts: dict[nn.Module, int] = {}
    calls = {
        layer: common_call(
            groups,
            "value",
            f"layer {layer_name(model, layer)!r}",
            "value='mean' takes one mean per layer: make one ablation per call",
        )
        for layer, groups in layers.items()
    }
    for inputs in iter_batches(data):
        if len(inputs) == 0:
            continue
        captures = [LayerCapture(layer, model=model, call=calls[layer]) for layer in layers]
        record(model, inputs, captures)
        for layer, capture in zip(layers, captures, strict=True):
            if not capture.calls:
                capture.check_runs()
                raise ValueError(not_run(capture.name, layer))
            for output, *_ in capture.calls:
                axis = channel_axis(layers[layer], output, layer)
                if per_position:
                    _check_same_positions(sums.get(layer), output, capture.name)
                    rows = output.reshape(len(output), *output.shape[1:])
                else:
                    rows = output.movedim(axis, -1).reshape(-1, output.shape[axis])
                sums[layer] = sums.get(layer, 0) + rows.sum(0)
                counts[layer] = counts.get(layer, 0) + rows.shape[0]
    if not sums:
        raise ValueError("data is empty; value='mean' needs at least one example to average over")
    means = {layer: sums[layer] / counts[layer] for layer in sums}
    for layer, mean in means.items():
        if not torch.isfinite(mean).all():
            raise ValueError(
                f"data gives NaN or infinite activations at layer {layer_name(model, layer)!r}, "
                f"so value='mean' has no finite mean; check data for NaN or infinite values"
            )
    return means


def _check_same_positions(total: Tensor | None, output: Tensor, name: str) -> None:
    """Per-position means need every batch to have the same positions (sequence length)."""
    if total is not None and total.shape != output.shape[1:]:
        raise ParameterError(
            "data",
            f"value='position_mean' averages layer {name}'s output position by position, but "
            f"its batches give {tuple(total.shape)} and {tuple(output.shape[1:])}; give data "
            f"of one length",
        )


class Ablation:
    """Context manager replacing some neurons of some layers during forward passes.

    Build it with :func:`ablate` or :func:`retain`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_groups import NeuronGroup
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> with Ablation(model, [NeuronGroup("1", [0, 2])]):
    ...     out = model(torch.ones(1, 2))
    >>> out[0, 0].item(), out[0, 2].item(), len(model[1]._forward_hooks)
    (0.0, 0.0, 0)
    """

    def __init__(
        self,
        model: nn.Module,
        groups: GroupsLike,
        value: Value = "zero",
        data: Tensor | Iterable[Any] | None = None,
        keep: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.keep = keep
        self._by_layer = _groups_by_layer(model, groups)
        check_value(value, data)
        self.value = value
        self._means: dict[nn.Module, Tensor] = {}
        if isinstance(value, str) and value in ("mean", "position_mean"):
            with guarded_call(model, "retain" if keep else "ablate"):
                self._means = mean_activations(
                    model, self._by_layer, data, per_position=value == "position_mean"
                )
        self._handles: list[Any] = []
        self._pass_runs: dict[nn.Module, int] = {}
        self._ablated: set[tuple[nn.Module, int | None]] = set()
        self._model_runs = 0

    def replacement(
        self, layer: nn.Module, output: Tensor, groups: list[NeuronGroup] | None = None
    ) -> Tensor:
        """What ``layer`` outputs instead of ``output`` while the ablation is active (with
        ``groups``, only those of the layer's groups are ablated)."""
        groups = self._by_layer[layer] if groups is None else groups
        axis = channel_axis(groups, output, layer)
        # the elements the groups select: all positions of their neurons, or the one
        # position a group's reduction names; retaining keeps those and replaces the rest
        chosen = self._chosen(groups, output, axis)
        mask = (~chosen if self.keep else chosen).to(output.dtype)
        fill = self._fill(layer, output, axis)
        # a blend, not an in-place write: the output may be needed by autograd, and the
        # gradient still flows to the kept channels
        return output * (1 - mask) + fill * mask

    def _chosen(self, groups: list[NeuronGroup], output: Tensor, axis: int) -> Tensor:
        """The elements of ``output`` the groups select (see :func:`element_mask`)."""
        return element_mask(groups, output)

    def _fill(self, layer: nn.Module, output: Tensor, axis: int) -> Tensor:
        """What the replaced elements of ``layer``'s ``output`` become."""
        return fill_value(
            self.value, self._means.get(layer), output, axis, layer_name(self.model, layer)
        )

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"layer {layer_name(self.model, module)!r} returns {type(output).__name__}; "
                f"only layers with one output tensor can be ablated"
            )
        run = self._pass_runs.get(module, 0)
        self._pass_runs[module] = run + 1
        groups = [g for g in self._by_layer[module] if g.call in (None, run)]
        if not groups:
            return output
        self._ablated.update((module, g.call) for g in groups)
        return self.replacement(module, output, groups)

    def _start_model_run(self, module: nn.Module, args: Any) -> None:
        self._pass_runs = {}

    def _count_model_run(self, module: nn.Module, args: Any, output: Any) -> None:
        self._model_runs += 1

    def __enter__(self) -> Ablation:
        if self._handles:
            raise RuntimeError(
                "this ablation is already active (its with block was entered twice); nested "
                "blocks need their own ablate(...) / retain(...) objects"
            )
        self._pass_runs, self._ablated = {}, set()
        self._model_runs = 0
        try:
            for layer in self._by_layer:
                self._handles.append(layer.register_forward_hook(on_this_thread(self._hook)))
            self._handles.append(
                self.model.register_forward_pre_hook(on_this_thread(self._start_model_run))
            )
            self._handles.append(
                self.model.register_forward_hook(on_this_thread(self._count_model_run))
            )
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._remove_hooks()
        wanted = {(layer, g.call) for layer, groups in self._by_layer.items() for g in groups}
        idle = sorted(
            f"{layer_name(self.model, layer)!r}" + ("" if call is None else f" (call={call})")
            for layer, call in wanted - self._ablated
        )
        if exc_type is None and self._model_runs and idle:
            raise ValueError(
                f"layer {', '.join(idle)} never ran in the {self._model_runs} forward pass(es) "
                f"of the model inside the with block, so its groups were not ablated; choose a "
                f"layer (and a call) that the model's forward pass runs"
            )


def ablate(
    model: nn.Module,
    groups: GroupsLike,
    value: Value = "zero",
    data: Tensor | Iterable[Any] | None = None,
) -> Ablation:
    """Switch the groups' neurons off inside a ``with`` block.

    Parameters
    ----------
    model : nn.Module
        The model; it is restored exactly on exit, also on error.
    groups : NeuronGroup, GroupSet or list of NeuronGroup
        The neurons to ablate; groups may belong to several layers. Every
        position of each neuron is ablated, or, for a group whose reduction
        names one position (a head at one token), only that position; group
        weights do not matter.
    value : {"zero", "mean", "position_mean"}, float or Tensor
        What ablated neurons output: zero; their mean activation over
        ``data`` (per neuron, over examples and positions); their mean at each
        position over ``data``'s examples (``"position_mean"``: mean ablation per
        token, for data of the inputs' length); a number; or a tensor with one
        value per neuron of the layer.
    data : Tensor, Dataset, DataLoader or list of batches, optional
        Model inputs for ``value="mean"``, read by the package's one data
        rule (batches that are tensors, ``(x, y)`` tuples or dicts; see
        :mod:`captum_groups.data`). Empty data, and data that gives NaN or
        infinite activations, are refused.

    Returns
    -------
    Ablation
        A context manager. On exit it raises if the model ran inside the
        block but an ablated layer never did (the ablation had no effect);
        one object can be active once at a time. A group with ``call=t`` is
        ablated in its layer's run ``t`` of each forward pass only.

    Examples
    --------
    >>> import torch
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> x = torch.ones(4, 2)
    >>> with ablate(model, NeuronGroup("1", [0, 1, 2])):
    ...     out = model(x)
    >>> torch.allclose(out, model[2].bias.expand(4, 1))
    True
    """
    return Ablation(model, groups, value, data, keep=False)


def retain(
    model: nn.Module,
    groups: GroupsLike,
    value: Value = "zero",
    data: Tensor | Iterable[Any] | None = None,
) -> Ablation:
    """Keep only the groups' neurons of their layers inside a ``with`` block.

    Every other neuron of each layer that a group belongs to is ablated, as in
    :func:`ablate` (same parameters).

    Examples
    --------
    >>> import torch
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> with retain(model, NeuronGroup("1", [1])):
    ...     out = model(torch.ones(1, 2))
    >>> bool(out[0, 0] == 0 and out[0, 2] == 0)
    True
    """
    return Ablation(model, groups, value, data, keep=True)


def masked_output(
    model: nn.Module, groups: GroupsLike, output: Tensor, keep: bool = False
) -> Tensor:
    """``output`` of the groups' layer as :func:`ablate` (or, with ``keep``, :func:`retain`)
    makes it: the same numbers, computed on a given tensor instead of in a forward pass.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> masked_output(model, NeuronGroup("1", [0, 2]), torch.ones(1, 3))
    tensor([[0., 1., 0.]])
    """
    ablation = Ablation(model, groups, keep=keep)
    (layer,) = ablation._by_layer
    return ablation.replacement(layer, output)
