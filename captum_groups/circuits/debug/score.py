"""How strongly an image expresses a group: NeurFlow's log-barrier score and its references."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..._model.capture import LayerCapture, record
from ...discovery.crops import crop_and_resize
from ...groups import NeuronGroup
from ..graph import Circuit

__all__ = ["expression_score", "group_expression", "typical_activations"]


def expression_score(activations: Tensor, typical: Tensor, eps: float = 1e-6) -> Tensor:
    """NeurFlow's log-barrier score of member activations against typical ones.

    ``exp(mean_i log(max(a_i, 0) / (|t_i| + eps) + eps))`` over the last axis:
    the geometric mean of each neuron's activation relative to its typical
    activation (see the module docstring for what it means).

    Parameters
    ----------
    activations : Tensor
        (..., n) activations of a group's n neurons.
    typical : Tensor
        (n,) typical activations (mean over the group's top exemplars).
    eps : float
        Keeps the logarithm finite for silent neurons (NeurFlow: 1e-6).

    Returns
    -------
    Tensor
        (...) scores; 1 for activations equal to the typical ones.

    Examples
    --------
    >>> typical = torch.tensor([2.0, 4.0])
    >>> scores = expression_score(torch.tensor([[2.0, 4.0], [1.0, 2.0], [2.0, 0.0]]), typical)
    >>> [round(score, 4) for score in scores.tolist()]
    [1.0, 0.5, 0.001]
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    ratios = activations.clamp_min(0) / (typical.abs() + eps)
    return torch.log(ratios + eps).mean(-1).exp()


def _node_crops(circuit: Circuit, node: str, data: Tensor) -> Tensor:
    items = circuit.exemplars.get(node)
    if not items:
        raise ValueError(
            f"circuit node {node!r} has no typical activations and no stored exemplars to compute "
            f"them from; build the circuit with build_circuit (which records them)"
        )
    crops = [
        crop_and_resize(data[index][None], torch.tensor([box], device=data.device))
        for index, box in items
    ]
    return torch.cat(crops)


def typical_activations(circuit: Circuit, model: nn.Module, data: Tensor) -> dict[str, Tensor]:
    """Each node's typical member activations, from the circuit or its stored exemplars.

    A circuit built by :func:`build_circuit` records them (the mean over each
    node's top-k exemplars). For other circuits they are computed from the
    exemplar crops the circuit stores (``circuit.exemplars``, indices into
    ``data``): each member neuron's mean activation over them.

    Parameters
    ----------
    circuit : Circuit
        The circuit.
    model : nn.Module
        The model.
    data : Tensor or None
        The images the circuit's exemplars index; needed only for nodes
        without recorded typical activations.

    Returns
    -------
    dict of str to Tensor
        Node id -> (len(group),) typical activations.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> typical = typical_activations(circuit, model, x)
    >>> members = len(circuit.nodes["relu3:0"])
    >>> sorted(typical) == sorted(circuit.nodes), tuple(typical["relu3:0"].shape) == (members,)
    (True, True)
    """
    typical = {n: torch.tensor(v) for n, v in circuit.typical_activations.items()}
    missing = [n for n in circuit.nodes if n not in typical]
    if missing and data is None:
        raise ValueError(
            f"circuit nodes {missing} have no typical activations; pass data= (the images the "
            f"circuit's exemplars index) to compute them, or build the circuit with build_circuit"
        )
    for node in missing:
        crops = _node_crops(circuit, node, data)
        group = circuit.nodes[node]
        capture = LayerCapture(group.resolve(model))
        record(model, crops, [capture])
        typical[node] = group.neuron_activations(capture.output[0]).mean(0).cpu()
    return typical


def group_expression(
    group: NeuronGroup,
    layer_output: Tensor,
    typical: Tensor,
    boxes: Tensor,
    threshold: float,
    eps: float,
    node: str,
) -> dict[str, object]:
    """Score, value ratio, coverage and expressing crops of one group on the crops."""
    if (typical.abs() <= eps).any():
        warnings.warn(
            f"node {node!r} has member neurons whose typical activation is zero; the score "
            f"divides by it (plus eps), so those neurons dominate it",
            UserWarning,
            stacklevel=3,
        )
    members = group.neuron_activations(layer_output).detach().cpu().float()
    scores = expression_score(members, typical, eps)
    weights = torch.ones(len(group)) if group.weights is None else torch.tensor(group.weights)
    value_ratio = (members @ weights.float()) / ((typical @ weights.float()).abs() + eps)
    coverage = (members.clamp_min(0) >= threshold * typical.abs()).float().mean(1)
    order = scores.argsort(descending=True, stable=True)
    return {
        "score": float(scores.max()),
        "image_score": float(scores[0]),
        "value_ratio": float(value_ratio.max()),
        "coverage": float(coverage.max()),
        "active": bool(scores.max() >= threshold),
        "crops": [
            (tuple(boxes[i].tolist()), float(scores[i])) for i in order if scores[i] >= threshold
        ],
    }
