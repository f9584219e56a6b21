"""What a circuit build is asked, checked before any pass: layers in forward order that cut the
network, targets the model can explain, a precision the integration can use; and the message
for a class no image is predicted as."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._model.capture import LayerCapture, record
from .._validation.checks import ParameterError
from ..groups import Layer, NeuronGroup, layer_name, resolve_layer
from ._passes import (
    TargetKey,
    model_device_dtype,
)


def _layer_names(model: nn.Module, layers: Sequence[Layer]) -> list[str]:
    """Circuit layers as dotted names (modules or names given), each a submodule."""
    if isinstance(layers, (str, nn.Module)) or not layers:
        raise ParameterError(
            "layers", "layers must be a non-empty list of layers (modules or dotted names)"
        )
    names = [layer_name(model, resolve_layer(model, layer, "layers")) for layer in layers]
    if len(set(names)) != len(names):
        raise ParameterError("layers", f"layers must not repeat a layer, got {names}")
    return names


def _check_targets(
    model: nn.Module, targets: Sequence[int | NeuronGroup], layers: list[str]
) -> list[TargetKey]:
    """Class indices, or groups of a layer after the circuit, with their layer named."""
    if isinstance(targets, (int, NeuronGroup)) or not targets:
        raise ParameterError(
            "targets", "targets must be a non-empty list of class indices or NeuronGroups"
        )
    checked: list[TargetKey] = []
    for target in targets:
        if isinstance(target, NeuronGroup):
            name = layer_name(model, target.resolve(model))
            if name in layers:
                raise ParameterError(
                    "target", "a target group must belong to a layer above all circuit layers"
                )
            target = target.replace(layer=name)
        elif isinstance(target, bool) or not isinstance(target, int):
            raise ParameterError(
                "target", f"target must be a class index or a NeuronGroup, got {target!r}"
            )
        elif target < 0:
            raise ParameterError("target", f"target class must be non-negative, got {target}")
        if target in checked:
            raise ParameterError("targets", f"targets must not repeat, got {target!r} twice")
        checked.append(target)
    return checked


def _check_forward_order(
    model: nn.Module, layers: list[str], targets: list[TargetKey], images: Tensor
) -> None:
    """One probe pass: each layer runs once, in the order given, before any target group."""
    order: list[nn.Module] = []
    watched = layers + sorted({str(t.layer) for t in targets if isinstance(t, NeuronGroup)})
    captures = [LayerCapture(model.get_submodule(name), order=order) for name in watched]
    output = record(model, images, captures)
    names = {id(model.get_submodule(name)): name for name in watched}
    ran = [names[id(module)] for module in order]
    for name in watched:
        if ran.count(name) != 1:
            raise ParameterError(
                "layers",
                f"layer {name!r} runs {ran.count(name)} times in a forward pass; "
                f"circuit layers must run exactly once",
            )
    if sorted(layers, key=ran.index) != layers:
        raise ParameterError(
            "layers",
            f"layers must be given in forward order (lowest first); they run as "
            f"{sorted(layers, key=ran.index)}",
        )
    for name in watched[len(layers) :]:
        if ran.index(name) < ran.index(layers[-1]):
            raise ParameterError(
                "target",
                f"target group layer {name!r} runs before circuit layer {layers[-1]!r}; "
                f"a target group must belong to a layer after all circuit layers",
            )
    for target in targets:
        if isinstance(target, int) and (output.ndim != 2 or target >= output.shape[1]):
            raise ParameterError(
                "target",
                f"target class {target} is out of range for "
                f"{output.shape[1] if output.ndim == 2 else tuple(output.shape)} outputs",
            )


def none_predicted(target: int, counts: Counter[int]) -> str:
    """The message for a class the model predicts for no image: the classes it does predict,
    most first, and how to use every image instead.

    Examples
    --------
    >>> none_predicted(5, Counter({3: 40, 8: 2}))  # doctest: +NORMALIZE_WHITESPACE
    'the model predicts class 5 for none of the images; it predicts class 3 (40 images),
    8 (2 images); choose one of those (captum-groups classes lists them), or use every
    image with predicted_only=False (--no-predicted-only on the command line)'
    """
    shown = ", ".join(f"{c} ({n} image{'s' if n != 1 else ''})" for c, n in counts.most_common(8))
    more = f" and {len(counts) - 8} more classes" if len(counts) > 8 else ""
    return (
        f"the model predicts class {target} for none of the images; it predicts class "
        f"{shown}{more}; choose one of those (captum-groups classes lists them), or use "
        f"every image with predicted_only=False (--no-predicted-only on the command line)"
    )


def check_precision(model: nn.Module) -> None:
    """Refuse a half-precision model before any pass: NeurFlow's integrated gradients need
    float32 or float64."""
    dtype = model_device_dtype(model)[1]
    if dtype in (torch.float16, torch.bfloat16):
        raise ParameterError(
            "model",
            f"the model computes in {dtype}; NeurFlow's integrated gradients need float32 or "
            f"float64 (half precision sums 24 steps too coarsely): build from model.float()",
        )
