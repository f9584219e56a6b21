"""debug_image and compare_classes: one image through one or two circuits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..._model.capture import LayerCapture, record
from ..._model.guards import check_callable_model, preserve_buffers, warn_if_training
from ..._validation.checks import Count, Number, validate
from ..._validation.deprecation import warn_deprecated
from ...discovery.crops import NEURFLOW_SCALES, crop_and_resize, crop_boxes
from ...groups import NeuronGroup
from .._ids import TARGET
from ..graph import Circuit
from .flow import conductances, edge_fractions, propagate
from .results import ClassComparison, GroupDebug, ImageDebug
from .score import group_expression, typical_activations

__all__ = ["compare_classes", "debug_image"]


def _check_image(image: Tensor) -> Tensor:
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a tensor (C, H, W) or (1, C, H, W), got {type(image)}")
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"image must be one image (C, H, W) or (1, C, H, W), got {image.shape}")
    if not torch.isfinite(image).all():
        raise ValueError("image holds NaN or inf values")
    return image


def _boxes(height: int, width: int, scales: Sequence[float]) -> Tensor:
    """The whole image first, then the crops of every scale (each box once)."""
    boxes = [(0, 0, height, width)]
    boxes += [b for b in map(tuple, crop_boxes(height, width, scales).tolist()) if b != boxes[0]]
    return torch.tensor(boxes)


def _check_arguments(
    model: nn.Module, circuit: Circuit, threshold: float, n_steps: int, versus: int | None
) -> None:
    check_callable_model(model, "debug_image", needs_grad=True)
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a Circuit, got {type(circuit).__name__}")
    circuit.check_neurflow("debug_image")
    if not circuit.nodes:
        raise ValueError("the circuit has no groups to debug")
    validate({"threshold": Number(0, open=True), "n_steps": Count(1)}, locals())
    if versus is not None:
        if not isinstance(circuit.target, int):
            raise ValueError("versus needs a circuit whose target is a class index")
        if isinstance(versus, bool) or not isinstance(versus, int):
            raise TypeError(f"versus must be a class index, got {versus!r}")
        if versus == circuit.target:
            raise ValueError(f"versus={versus} is the circuit's own target; give another class")


def _target_values(target: int | NeuronGroup, output: Tensor, captured: dict) -> Tensor:
    if isinstance(target, int):
        return output[:, target]
    return target(captured[TARGET])


def _warn_former_order(caller: str, old: str, new: str) -> None:
    """Warn that a call used the function's former argument order (which still works)."""
    warn_deprecated(
        f"{caller}({old})",
        f"call {caller}({new}): the model first, then the circuit(s), then the image",
    )


def _baseline(image: Tensor, baselines: float | Tensor) -> Tensor:
    if isinstance(baselines, Tensor):
        return torch.broadcast_to(baselines.reshape(baselines.shape[-image.ndim :]), image.shape)
    return torch.full_like(image, float(baselines))


def _record_crops(
    model: nn.Module, circuit: Circuit, crops: Tensor, baseline: Tensor
) -> tuple[Tensor, dict[str, Tensor], float]:
    """One forward pass over the crops and the baseline: the model output, each circuit
    layer's (and a target group's) output, and the target's change image - baseline."""
    captures = {layer: LayerCapture(model.get_submodule(layer)) for layer in circuit.layers}
    if isinstance(circuit.target, NeuronGroup):
        captures[TARGET] = LayerCapture(circuit.target.resolve(model))
    with preserve_buffers(model):
        output = record(model, torch.cat([crops, baseline[None]]), list(captures.values()))
    captured = {name: capture.output[0] for name, capture in captures.items()}
    values = _target_values(circuit.target, output, captured)
    return output, captured, float(values[0] - values[-1])


def debug_image(
    model: nn.Module,
    circuit: Circuit,
    image: Tensor,
    threshold: float = 0.6,
    eps: float = 1e-6,
    scales: Sequence[float] | None = None,
    versus: int | None = None,
    baselines: float | Tensor = 0.0,
    n_steps: int = 32,
    data: Tensor | None = None,
) -> ImageDebug:
    """Debug one image through a circuit (NeurFlow's image debugging).

    For every group of the circuit: how strongly the image and its
    multi-scale crops express the group's concept compared with the group's
    exemplars (:func:`expression_score`), which crops do it, and how much of
    the target the group carries on this image. The module docstring says
    what the score means and where it misleads.

    Parameters
    ----------
    model : nn.Module
        The model.
    circuit : Circuit
        A circuit of ``model``, e.g. from :func:`build_circuit`. (The former
        order, ``debug_image(circuit, model, image)``, still works and warns.)
    image : Tensor
        One image, (C, H, W) or (1, C, H, W).
    threshold : float
        Score at which a group counts as active (NeurFlow: 0.6-0.8).
    eps : float
        The log barrier's epsilon (NeurFlow: 1e-6).
    scales : sequence of float, optional
        Crop sides as fractions of the image side; the circuit's own scales
        by default (NeurFlow: 1, 1/2, 1/4, stride half a side).
    versus : int, optional
        A second class: also split the margin (target minus this class)
        among the groups ("why the target and not this class").
    baselines : float or Tensor
        Baseline of the attributions (zeros by default), as in Captum.
    n_steps : int
        Integration steps of the attributions.
    data : Tensor, optional
        The images the circuit's exemplars index; needed only for circuits
        that do not record typical activations.

    Returns
    -------
    ImageDebug

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0, 0.5), n_steps=8, progress=False)
    >>> debug = debug_image(model, circuit, x[y == 3][0], n_steps=8)
    >>> debug.prediction, sorted(debug.groups) == sorted(circuit.nodes)
    (3, True)
    >>> all(0 <= row.coverage <= 1 for row in debug.groups.values())
    True
    """
    if isinstance(model, Circuit) and isinstance(circuit, nn.Module):
        _warn_former_order("debug_image", "circuit, model, image", "model, circuit, image")
        model, circuit = circuit, model
    _check_arguments(model, circuit, threshold, n_steps, versus)
    image = _check_image(image)
    warn_if_training(model, "debug_image")
    scales = tuple(scales if scales is not None else circuit.params.get("scales", NEURFLOW_SCALES))
    typical = typical_activations(circuit, model, data)
    boxes = _boxes(*image.shape[-2:], scales)
    baseline = _baseline(image, baselines)
    output, captured, change = _record_crops(
        model, circuit, crop_and_resize(image[None], boxes), baseline
    )
    rows = {
        node: group_expression(
            group, captured[group.layer][:-1], typical[node].float(), boxes, threshold, eps, node
        )
        for node, group in circuit.nodes.items()
    }
    # what each group carries: conductance, then the change split along the circuit's edges
    conductance, contrast_cond = conductances(circuit, model, image, baseline, n_steps, versus)
    flows_to = edge_fractions(circuit, model, image, baseline, n_steps, captured)
    flow, edge_flows = propagate(circuit, conductance, flows_to)
    contrast, edge_contrasts = (
        propagate(circuit, contrast_cond, flows_to) if versus is not None else (None, None)
    )
    groups = {
        node: GroupDebug(
            node=node,
            group=group,
            conductance=conductance[node],
            flow=flow[node],
            share=flow[node] / change if change != 0 else math.nan,
            contrast=None if contrast is None else contrast[node],
            **rows[node],
        )
        for node, group in circuit.nodes.items()
    }
    return ImageDebug(
        circuit=circuit,
        image=image.detach(),
        groups=groups,
        edge_flows=edge_flows,
        edge_contrasts=edge_contrasts,
        logits=output[0].detach(),
        target_change=change,
        threshold=float(threshold),
        versus=versus,
    )


def compare_classes(
    model: nn.Module,
    circuit_a: Circuit,
    circuit_b: Circuit,
    image: Tensor,
    **kwargs: object,
) -> ClassComparison:
    """Why the model calls the image class A and not class B.

    Debugs the image through the circuit of each class, each against the
    other class, and ranks the groups of both circuits by how much of the
    margin ``logit_A - logit_B`` they carry along their circuit's edges:
    groups of A's circuit that push toward A, and groups of B's circuit
    that would push toward B.

    Parameters
    ----------
    model : nn.Module
        The model.
    circuit_a, circuit_b : Circuit
        Circuits of two different classes (e.g. the predicted and the true class).
    image : Tensor
        One image, (C, H, W) or (1, C, H, W). (The former order,
        ``compare_classes(model, image, circuit_a, circuit_b)``, still works and warns.)
    **kwargs
        Passed to :func:`debug_image` (threshold, eps, scales, n_steps, ...).

    Returns
    -------
    ClassComparison

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> kw = dict(tau=4, k=10, n_groups=2, scales=(1.0,), n_steps=8, progress=False)
    >>> c3 = build_circuit(model, ["relu3"], 3, x, **kw)
    >>> c8 = build_circuit(model, ["relu3"], 8, x, **kw)
    >>> comparison = compare_classes(model, c3, c8, x[y == 3][0], n_steps=8)
    >>> comparison.classes, len(comparison.separating()) == len(c3.nodes) + len(c8.nodes)
    ((3, 8), True)
    """
    if isinstance(circuit_a, Tensor) and isinstance(image, Circuit):
        _warn_former_order(
            "compare_classes",
            "model, image, circuit_a, circuit_b",
            "model, circuit_a, circuit_b, image",
        )
        circuit_a, circuit_b, image = circuit_b, image, circuit_a
    for name, circuit in (("circuit_a", circuit_a), ("circuit_b", circuit_b)):
        if not isinstance(circuit, Circuit) or not isinstance(circuit.target, int):
            raise TypeError(f"{name} must be a Circuit whose target is a class index")
    if circuit_a.target == circuit_b.target:
        raise ValueError(f"both circuits explain class {circuit_a.target}; give two classes")
    first = debug_image(model, circuit_a, image, versus=circuit_b.target, **kwargs)
    second = debug_image(model, circuit_b, image, versus=circuit_a.target, **kwargs)
    return ClassComparison(first, second)
