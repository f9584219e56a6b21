"""What a circuit build is asked, checked before any pass: layers in forward order that cut the
network, targets the model can explain, a precision the integration can use, a class some
image is predicted as; and the message for a class no image is predicted as."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._model.capture import LayerCapture, record
from .._validation.checks import ParameterError
from ..data import Data, iter_batches
from ..groups import Layer, NeuronGroup, layer_name, resolve_layer
from ._passes import (
    TargetKey,
    model_device_dtype,
)
from .routing import ClassRouting


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
    for name, capture in zip(layers, captures, strict=False):
        shape = tuple(capture.calls[0][0].shape) if capture.calls else ()
        if len(shape) == 3:
            # NeurFlow's circuits read channels with a spatial mean; a token tensor's mean
            # over tokens would make groups of positions, or mix every token's features
            raise ParameterError(
                "layers",
                f"layer {name!r} outputs {shape}, a sequence of tokens; build_circuit builds "
                f"circuits of (N, C, H, W) or (N, F) layers. In a transformer no head or MLP "
                f"layer cuts the network (the residual stream passes around it): build its "
                f"circuit through the stream with build_stream_circuit (captum-groups circuit "
                f"--corrupt)",
            )
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
        if isinstance(target, int) and output.ndim != 2:
            raise ParameterError(
                "target",
                f"target class {target} needs outputs shaped (N, classes), got "
                f"{tuple(output.shape)}",
            )
        if isinstance(target, int) and target >= output.shape[1]:
            n_outputs = output.shape[1]
            raise ParameterError(
                "target",
                f"target class {target} is out of range for {n_outputs} outputs "
                f"(0 to {n_outputs - 1})",
            )


def check_request(
    model: nn.Module, layers: Sequence[Layer], targets: Sequence[int | NeuronGroup], data: Data
) -> tuple[list[str], list[TargetKey]]:
    """Check a circuit request before any pass over the data; the layer names and targets.

    What :func:`~captum_groups.build_circuits` checks first, one call for a front end
    (the command line) that does other work before the build: the layers are
    submodules, given once, in forward order, each run once; the targets are class
    indices within the model's outputs or groups of a later layer; the model computes
    in float32 or float64. One forward pass on the first example of ``data``.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> check_request(model, ["relu2", "relu3"], [3], x)
    (['relu2', 'relu3'], [3])
    >>> check_request(model, ["relu3"], [10], x)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: target class 10 is out of range for 10 outputs ...
    """
    names = _layer_names(model, layers)
    checked = _check_targets(model, targets, names)
    check_precision(model)
    device, dtype = model_device_dtype(model)
    first = next(iter(iter_batches(data, 1)), None)
    if first is None:
        raise ParameterError("data", "data holds no examples")
    with torch.no_grad():
        _check_forward_order(model, names, checked, first.to(device, dtype))
    return names, checked


def check_predicted(routing: ClassRouting, target: int, predicted_only: bool) -> None:
    """Refuse a class the model predicts for none of the routed images, before the build.

    With ``predicted_only`` the build would have no image to explain; without it, the
    report would have no image of the class to measure the circuit's fidelity on.

    Examples
    --------
    >>> from captum_groups.circuits import route_classes
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> check_predicted(route_classes(model, x[:40], progress=False), 3, True)
    """
    counts = routing.counts()
    if target not in counts:
        raise ParameterError("target", no_image_of(target, counts, predicted_only))


def no_image_of(target: int, counts: Counter[int], predicted_only: bool) -> str:
    """The message for a class no image is predicted as: with ``predicted_only`` the build
    has no image to explain (:func:`none_predicted`); without it, the report has no image
    of the class to measure the circuit's fidelity on.

    Examples
    --------
    >>> print(no_image_of(5, Counter({3: 40}), predicted_only=False))  # doctest: +ELLIPSIS
    the model predicts class 5 for none of the images, so the report has no image ...
    """
    if predicted_only:
        return none_predicted(target, counts)
    return (
        f"the model predicts class {target} for none of the images, so the report has no image "
        f"to measure the circuit's fidelity on; the model predicts "
        + ", ".join(f"{c} ({n})" for c, n in counts.most_common(8))
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
