"""Debugging one image through a circuit: which groups it expresses, where, and what they carry.

NeurFlow's first application (Cao et al., ICLR 2025): cut the image into the
same multi-scale crops the circuit was built from, score every group of the
circuit on every crop against the group's *typical activations* (each member
neuron's mean activation over the group's top exemplars), call the groups
above a threshold *active*, and follow the circuit from the target down
through them. Masking the named groups confirms the diagnosis.

The score (:func:`expression_score`) is the authors' log barrier::

    score = exp( mean_i log( max(a_i, 0) / (|t_i| + eps) + eps ) )

over the group's neurons ``i``, with activation ``a_i`` on the crop and
typical activation ``t_i``. It is the geometric mean of the neurons'
activations relative to their typical values, so:

- **1 means "as strongly as a typical exemplar"**, on geometric average; it
  is not capped (a crop can exceed the exemplars). A threshold of 0.6 (the
  default; the paper uses 0.6-0.8) reads "at least 60% of typical".
- **It is an AND over the group's neurons.** A silent neuron contributes
  ``log(eps)``, which caps the score near ``eps ** (1 / n)`` times the rest
  for a group of ``n`` neurons: about 0.001 for 2 neurons, 0.06 for 5, 0.25
  for 10, 0.5 for 20 and 0.7 for 40 (eps = 1e-6). So for small groups one
  silent neuron vetoes the group whatever the threshold, while groups of 40
  or more neurons can pass 0.6 with a silent member: thresholds are only
  comparable between groups of similar size, and ``eps`` matters there.
- **Polysemantic groups read low.** When a group's neurons answer different
  concepts, a crop showing one concept leaves the other neurons silent and
  the score collapses, although the group's value is half its typical one.
  :class:`GroupDebug` therefore also reports ``value_ratio`` (the group's
  value relative to its typical value, an arithmetic mean) and ``coverage``
  (the fraction of its neurons at the threshold or above): a high
  ``value_ratio`` with partial ``coverage`` and a low score is a partly
  expressed group.
- **Activations must be non-negative** (after a ReLU): negative values are
  clamped to zero, so on signed layers the score only sees the positive part.
  A member whose typical activation is zero would dominate the score (a
  warning says so).
- **A concept, not a class.** On the digits CNN (``benchmarks/debug_digits.py``)
  the groups of the ten class circuits are active (whole image, 0.6) on 73% of
  their own class's test images and on 28% of the others'; the best crop
  raises both (93%, 54%). ``eps`` from 1e-8 to 1e-3 changes at most 0.34% of
  those decisions there, since a member is silent in only 0.5% of cases.

The attribution part says how much each group carries: the conductance of
the target through the group (``LayerGroupConductance``, all paths), and the
target's change split along the circuit's own edges, top-down, with
:class:`~captum_groups.attr.LayerGroupInteraction` giving each edge's share of the
upper group's change on this image (``flow``). Masking the top group of the
circuit's top layer so ranked sends 9 of the digits CNN's 10 errors back to
the true class, against 21% for random groups of the same size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from .._hooks import LayerCapture, preserve_buffers, record, warn_if_training
from ..attr import LayerGroupConductance, LayerGroupInteraction
from ..discovery.crops import NEURFLOW_SCALES, crop_and_resize, crop_boxes
from ..groups import NeuronGroup
from ._ids import TARGET
from .graph import Circuit
from .plot import draw_circuit

__all__ = [
    "ClassComparison",
    "GroupDebug",
    "ImageDebug",
    "compare_classes",
    "debug_image",
    "expression_score",
    "typical_activations",
]

Box = tuple[int, int, int, int]
_COLORS = ("tab:orange", "tab:green", "tab:purple", "tab:cyan", "tab:olive", "tab:pink")


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


@dataclass(frozen=True)
class GroupDebug:
    """How one image expresses one group of a circuit, and what the group carries.

    Attributes
    ----------
    node : str
        Node id in the circuit.
    group : NeuronGroup
        The group (with its label, if any).
    score : float
        Log-barrier expression score, the maximum over the image and its crops.
    image_score : float
        The score of the whole image.
    value_ratio : float
        The group's value relative to its typical value (maximum over crops).
    coverage : float
        Fraction of member neurons at ``threshold`` x typical or above (maximum over crops).
    active : bool
        ``score >= threshold``.
    crops : list of (box, score)
        The crops that express the group (score at the threshold or above),
        best first; boxes are (top, left, height, width) in the image.
    conductance : float
        Conductance of the target through the group (all paths), in target units.
    flow : float
        The part of the target's change that reaches it through this group
        along the circuit's edges, in target units.
    share : float
        ``flow`` as a fraction of the target's change ``T(image) - T(baseline)``.
        It can exceed 1 (or be negative) when neurons outside the circuit push
        the other way, so compare shares within a layer.
    contrast : float or None
        With ``versus``: the part of the margin (target minus the other
        class) carried through the group along the circuit's edges.
    """

    node: str
    group: NeuronGroup
    score: float
    image_score: float
    value_ratio: float
    coverage: float
    active: bool
    crops: list[tuple[Box, float]] = field(repr=False)
    conductance: float
    flow: float
    share: float
    contrast: float | None


@dataclass(frozen=True)
class ImageDebug:
    """The result of :func:`debug_image`: every group of the circuit on one image.

    Attributes
    ----------
    circuit : Circuit
        The debugged circuit.
    image : Tensor
        The image (C, H, W).
    groups : dict of str to GroupDebug
        One entry per circuit node, in the circuit's node order.
    edge_flows : dict of (str, str) to float
        The target's change carried along each circuit edge on this image.
    edge_contrasts : dict of (str, str) to float or None
        With ``versus``: the margin carried along each edge.
    logits : Tensor
        The model output on the image.
    target_change : float
        ``T(image) - T(baseline)`` of the circuit's target.
    threshold : float
        The score at which a group counts as active.
    versus : int or None
        The second class of the contrast.
    """

    circuit: Circuit
    image: Tensor = field(repr=False)
    groups: dict[str, GroupDebug] = field(repr=False)
    edge_flows: dict[tuple[str, str], float] = field(repr=False)
    edge_contrasts: dict[tuple[str, str], float] | None = field(repr=False)
    logits: Tensor = field(repr=False)
    target_change: float
    threshold: float
    versus: int | None

    @property
    def prediction(self) -> int:
        """The model's predicted class for the image."""
        return int(self.logits.argmax())

    @property
    def active(self) -> list[str]:
        """Ids of the active groups (score at the threshold or above)."""
        return [node for node, row in self.groups.items() if row.active]

    @property
    def active_path(self) -> dict[tuple[str, str], float]:
        """Edges whose lower end is active, whose upper end is active or the target, and
        that carry a positive flow: this image's path through the circuit."""
        return {
            (lower, upper): flow
            for (lower, upper), flow in self.edge_flows.items()
            if self.groups[lower].active
            and (upper == TARGET or self.groups[upper].active)
            and flow > 0
        }

    def top(
        self,
        n: int = 1,
        by: str | None = None,
        layer: str | None = None,
        active_only: bool = True,
    ) -> list[GroupDebug]:
        """The n groups that carry most, best first.

        Flows of different layers are not on one scale: a lower group can
        carry more than its upper groups' whole change when neurons outside
        the circuit push against it. Rank within a layer (``layer``) to
        compare like with like; NeurFlow masks groups of the circuit's top
        layer.

        Parameters
        ----------
        n : int
            How many.
        by : {"contrast", "flow", "conductance", "score"}, optional
            Ranking key; ``"contrast"`` when the debug has a ``versus`` class,
            else ``"flow"``.
        layer : str, optional
            Rank only the groups of this circuit layer.
        active_only : bool
            Rank only the active groups.
        """
        key = by or ("contrast" if self.versus is not None else "flow")
        if key not in ("contrast", "flow", "conductance", "score"):
            raise ValueError(f"by must be 'contrast', 'flow', 'conductance' or 'score', got {by!r}")
        if key == "contrast" and self.versus is None:
            raise ValueError("by='contrast' needs a debug made with versus=<class>")
        if layer is not None and layer not in self.circuit.layers:
            raise ValueError(f"layer {layer!r} is not a circuit layer {self.circuit.layers}")
        rows = [
            r
            for r in self.groups.values()
            if (r.active or not active_only) and (layer is None or r.group.layer == layer)
        ]
        return sorted(rows, key=lambda r: -getattr(r, key))[:n]

    def table(self) -> str:
        """A text table: one row per group, active groups marked."""
        head = f"{'node':12s} {'label':14s} {'score':>6s} {'image':>6s} {'value':>6s} "
        head += f"{'cover':>5s} {'share':>6s} {'flow':>7s}"
        head += f" {'contrast':>8s}" if self.versus is not None else ""
        lines = [head]
        for node, row in self.groups.items():
            line = (
                f"{node:12s} {(row.group.label or '')[:14]:14s} {row.score:6.2f} "
                f"{row.image_score:6.2f} {row.value_ratio:6.2f} {row.coverage:5.2f} "
                f"{row.share:6.1%} {row.flow:7.3f}"
            )
            line += f" {row.contrast:8.3f}" if row.contrast is not None else ""
            lines.append(line + ("  *" if row.active else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"ImageDebug: predicted {self.prediction}, circuit of {self.circuit.target!r}, "
            f"{len(self.active)} active groups (threshold {self.threshold})\n{self.table()}"
        )

    def plot(
        self, data: Tensor | None = None, max_groups: int = 4, crops_per_group: int = 3
    ) -> Figure:
        """The image with the crops that express each active group, and the circuit with
        this image's active path highlighted.

        Parameters
        ----------
        data : Tensor, optional
            The images the circuit's exemplars index, for exemplar thumbnails.
        max_groups : int
            Active groups shown on the image: the top layer's first, each layer's
            by flow.
        crops_per_group : int
            Expressing crops drawn per group.

        Returns
        -------
        matplotlib.figure.Figure
        """
        shown = [
            row
            for layer in reversed(self.circuit.layers)
            for row in self.top(len(self.groups), "flow", layer)
        ][:max_groups]
        colors = {row.node: _COLORS[i % len(_COLORS)] for i, row in enumerate(shown)}
        width = max(len(self.circuit.node_ids(layer)) for layer in self.circuit.layers)
        columns = max(1, len(shown))
        figure = Figure(figsize=(max(7.0, 2.2 * width + 2.0), 2.4 + 2.0 * len(self.circuit.layers)))
        grid = figure.add_gridspec(2, columns, height_ratios=[1, len(self.circuit.layers) + 1])
        for i, row in enumerate(shown or [None]):
            axis = figure.add_subplot(grid[0, i])
            _show_image(axis, self.image)
            if row is None:
                axis.set_title("no active group", fontsize=8)
                continue
            for box, _ in row.crops[:crops_per_group]:
                _draw_box(axis, box, colors[row.node])
            label = f" ({row.group.label})" if row.group.label else ""
            axis.set_title(
                f"{row.node}{label}\nscore {row.score:.2f}, share {row.share:.0%}", fontsize=8
            )
        notes = {
            node: f"score {row.score:.2f} · {row.share:.0%}" for node, row in self.groups.items()
        }
        circuit_axis = figure.add_subplot(grid[1, :])
        draw_circuit(
            circuit_axis,
            self.circuit,
            data,
            edge_values=self.active_path,
            node_colors={node: colors.get(node, "black") for node in self.active},
            node_notes=notes,
        )
        circuit_axis.set_title(
            f"predicted {self.prediction}; active path toward {self.circuit.target!r} "
            f"(edge width: flow on this image)",
            fontsize=9,
        )
        figure.tight_layout()
        return figure


def _show_image(axis: object, image: Tensor) -> None:
    shown = image.detach().cpu().float()
    shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp_min(1e-12)
    if shown.shape[0] == 1:
        axis.imshow(shown[0].numpy(), cmap="gray_r")
    else:
        axis.imshow(shown[:3].permute(1, 2, 0).numpy())
    axis.set_xticks([])
    axis.set_yticks([])


def _draw_box(axis: object, box: Box, color: str) -> None:
    top, left, height, width = box
    axis.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5), width, height, fill=False, edgecolor=color, linewidth=2.0
        )
    )


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


def _check_arguments(circuit: Circuit, threshold: float, n_steps: int, versus: int | None) -> None:
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a Circuit, got {type(circuit).__name__}")
    if not circuit.nodes:
        raise ValueError("the circuit has no groups to debug")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
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


def _expression(
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


def debug_image(
    circuit: Circuit,
    model: nn.Module,
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
    circuit : Circuit
        A circuit of ``model``, e.g. from :func:`build_circuit`.
    model : nn.Module
        The model.
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
    >>> debug = debug_image(circuit, model, x[y == 3][0], n_steps=8)
    >>> debug.prediction, sorted(debug.groups) == sorted(circuit.nodes)
    (3, True)
    >>> all(0 <= row.coverage <= 1 for row in debug.groups.values())
    True
    """
    _check_arguments(circuit, threshold, n_steps, versus)
    image = _check_image(image)
    warn_if_training(model, "debug_image")
    scales = tuple(scales if scales is not None else circuit.params.get("scales", NEURFLOW_SCALES))
    typical = typical_activations(circuit, model, data)
    boxes = _boxes(*image.shape[-2:], scales)
    crops = crop_and_resize(image[None], boxes)
    baseline = (
        torch.broadcast_to(baselines.reshape(baselines.shape[-image.ndim :]), image.shape)
        if isinstance(baselines, Tensor)
        else torch.full_like(image, float(baselines))
    )
    captures = {layer: LayerCapture(model.get_submodule(layer)) for layer in circuit.layers}
    if isinstance(circuit.target, NeuronGroup):
        captures[TARGET] = LayerCapture(circuit.target.resolve(model))
    inputs = torch.cat([crops, baseline[None]])
    with preserve_buffers(model):
        output = record(model, inputs, list(captures.values()))
    captured = {name: capture.output[0] for name, capture in captures.items()}
    target_values = _target_values(circuit.target, output, captured)
    target_change = float(target_values[0] - target_values[-1])

    rows = {
        node: _expression(
            group, captured[group.layer][:-1], typical[node].float(), boxes, threshold, eps, node
        )
        for node, group in circuit.nodes.items()
    }
    conductance, contrast_cond = _conductances(circuit, model, image, baseline, n_steps, versus)
    flows_to = _edge_fractions(circuit, model, image, baseline, n_steps, captured)
    flow, edge_flows = _propagate(circuit, conductance, flows_to)
    contrast, edge_contrasts = (
        _propagate(circuit, contrast_cond, flows_to) if versus is not None else (None, None)
    )
    groups = {
        node: GroupDebug(
            node=node,
            group=group,
            conductance=conductance[node],
            flow=flow[node],
            share=flow[node] / target_change if target_change != 0 else math.nan,
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
        target_change=target_change,
        threshold=float(threshold),
        versus=versus,
    )


def _conductances(
    circuit: Circuit,
    model: nn.Module,
    image: Tensor,
    baseline: Tensor,
    n_steps: int,
    versus: int | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Conductance of the target (and of the margin over ``versus``) through every node."""
    targets = [circuit.target] if versus is None else [circuit.target, versus]
    inputs = image[None].expand(len(targets), *image.shape)
    conductance: dict[str, float] = {}
    margin: dict[str, float] = {}
    for layer in circuit.layers:
        nodes = circuit.node_ids(layer)
        if not nodes:
            continue
        values = LayerGroupConductance(model, layer).attribute(
            inputs,
            [circuit.nodes[n] for n in nodes],
            baselines=baseline[None].expand_as(inputs),
            target=targets[0] if versus is None else targets,
            n_steps=n_steps,
        )
        conductance.update(zip(nodes, values[0].tolist(), strict=True))
        if versus is not None:
            margin.update(zip(nodes, (values[0] - values[1]).tolist(), strict=True))
    return conductance, margin


def _edge_fractions(
    circuit: Circuit,
    model: nn.Module,
    image: Tensor,
    baseline: Tensor,
    n_steps: int,
    captured: Mapping[str, Tensor],
) -> dict[tuple[str, str], float]:
    """For each edge between two groups: the lower group's share of the upper group's change
    on this image (its conductance of the upper group, over the upper group's change)."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for lower, upper in circuit.edges:
        if upper != TARGET:
            key = (circuit.nodes[lower].layer, circuit.nodes[upper].layer)
            pairs.setdefault(key, []).append((lower, upper))
    fractions: dict[tuple[str, str], float] = {}
    for (lower_layer, upper_layer), edges in pairs.items():
        lowers = sorted({e[0] for e in edges}, key=list(circuit.nodes).index)
        uppers = sorted({e[1] for e in edges}, key=list(circuit.nodes).index)
        weights = LayerGroupInteraction(model, lower_layer, upper_layer).attribute(
            image[None],
            [circuit.nodes[n] for n in uppers],
            [circuit.nodes[n] for n in lowers],
            baselines=baseline[None],
            n_steps=n_steps,
        )[0]
        upper_output = captured[upper_layer]
        for lower, upper in edges:
            value = circuit.nodes[upper](upper_output[[0, -1]])
            change = float(value[0] - value[1])
            flow = float(weights[uppers.index(upper), lowers.index(lower)])
            fractions[(lower, upper)] = flow / change if abs(change) > 1e-12 else 0.0
    return fractions


def _propagate(
    circuit: Circuit,
    into_target: Mapping[str, float],
    fractions: Mapping[tuple[str, str], float],
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Split a quantity carried into the target down the circuit's edges, top-down."""
    node_values = {node: 0.0 for node in circuit.nodes}
    edge_values: dict[tuple[str, str], float] = {}
    for layer in reversed(circuit.layers):
        for node in circuit.node_ids(layer):
            for upper in circuit.out_edges(node):
                if upper == TARGET:
                    carried = into_target[node]
                else:
                    carried = node_values[upper] * fractions[(node, upper)]
                edge_values[(node, upper)] = carried
                node_values[node] += carried
    return node_values, edge_values


@dataclass(frozen=True)
class ClassComparison:
    """Why the model says class A and not class B: the groups that separate them.

    Attributes
    ----------
    first, second : ImageDebug
        The image debugged through the circuit of each class, each against
        the other class.
    """

    first: ImageDebug
    second: ImageDebug

    @property
    def classes(self) -> tuple[int, int]:
        """The two classes (A, B)."""
        return self.first.circuit.target, self.second.circuit.target  # type: ignore[return-value]

    def separating(self, layer: str | None = None) -> list[tuple[str, GroupDebug, float]]:
        """Every group of both circuits (of one layer, if given) with its push toward A
        over B, in margin units, strongest first: ``("A" or "B", the group's row, push)``.

        A group of A's circuit pushes by the margin ``logit_A - logit_B`` it carries
        along its circuit's edges; a group of B's circuit by minus the margin
        ``logit_B - logit_A`` it carries along B's. Rank within a layer to compare
        like with like (see :meth:`ImageDebug.top`).
        """
        rows = [("A", row, row.contrast) for row in self.first.groups.values()]
        rows += [("B", row, -row.contrast) for row in self.second.groups.values()]
        if layer is not None:
            rows = [item for item in rows if item[1].group.layer == layer]
            if not rows:
                raise ValueError(f"neither circuit has a group in layer {layer!r}")
        return sorted(rows, key=lambda item: -abs(item[2]))

    def table(self, layer: str | None = None) -> str:
        """A text table of the separating groups (active ones starred)."""
        a, b = self.classes
        lines = [f"{'circuit':8s} {'node':12s} {'label':14s} {'score':>6s} {f'{a} over {b}':>10s}"]
        for which, row, push in self.separating(layer):
            lines.append(
                f"{(a if which == 'A' else b)!s:8s} {row.node:12s} "
                f"{(row.group.label or '')[:14]:14s} {row.score:6.2f} {push:10.3f}"
                + ("  *" if row.active else "")
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        a, b = self.classes
        logits = self.first.logits
        return (
            f"class {a} ({float(logits[a]):.2f}) over class {b} ({float(logits[b]):.2f}); "
            f"groups by their push toward {a}:\n{self.table()}"
        )

    def plot(self, n: int = 6, layer: str | None = None) -> Figure:
        """Bars of the n groups (of one layer, if given) that separate the classes most,
        inactive ones pale, and the image with the crops that express the active group
        pushing most toward each class.

        Returns
        -------
        matplotlib.figure.Figure
        """
        a, b = self.classes
        rows = self.separating(layer)[:n]
        figure = Figure(figsize=(9.0, 0.5 * len(rows) + 2.0))
        grid = figure.add_gridspec(1, 3, width_ratios=[1, 1, 2.2])
        for column, (debug, cls) in enumerate([(self.first, a), (self.second, b)]):
            axis = figure.add_subplot(grid[0, column])
            _show_image(axis, debug.image)
            best = debug.top(1, by="contrast", layer=layer)
            if best:
                for box, _ in best[0].crops[:3]:
                    _draw_box(axis, box, "tab:red" if column == 0 else "tab:blue")
                axis.set_title(f"for {cls}: {best[0].node}\nscore {best[0].score:.2f}", fontsize=8)
            else:
                axis.set_title(f"no active group\nfor {cls}", fontsize=8)
        axis = figure.add_subplot(grid[0, 2])
        names = [
            f"{a if which == 'A' else b}:{row.node}"
            + (f" ({row.group.label})" if row.group.label else "")
            for which, row, _ in rows
        ]
        for position, (_, row, push) in enumerate(rows):
            axis.barh(
                position,
                push,
                color="tab:red" if push > 0 else "tab:blue",
                alpha=1.0 if row.active else 0.35,
            )
        axis.set_yticks(range(len(rows)), names, fontsize=8)
        axis.invert_yaxis()
        axis.axvline(0, color="0.3", linewidth=0.8)
        axis.set_xlabel(f"push toward {a} over {b} (margin units; pale: inactive)")
        figure.tight_layout()
        return figure


def compare_classes(
    model: nn.Module,
    image: Tensor,
    circuit_a: Circuit,
    circuit_b: Circuit,
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
    image : Tensor
        One image, (C, H, W) or (1, C, H, W).
    circuit_a, circuit_b : Circuit
        Circuits of two different classes (e.g. the predicted and the true class).
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
    >>> comparison = compare_classes(model, x[y == 3][0], c3, c8, n_steps=8)
    >>> comparison.classes, len(comparison.separating()) == len(c3.nodes) + len(c8.nodes)
    ((3, 8), True)
    """
    for name, circuit in (("circuit_a", circuit_a), ("circuit_b", circuit_b)):
        if not isinstance(circuit, Circuit) or not isinstance(circuit.target, int):
            raise TypeError(f"{name} must be a Circuit whose target is a class index")
    if circuit_a.target == circuit_b.target:
        raise ValueError(f"both circuits explain class {circuit_a.target}; give two classes")
    first = debug_image(circuit_a, model, image, versus=circuit_b.target, **kwargs)
    second = debug_image(circuit_b, model, image, versus=circuit_a.target, **kwargs)
    return ClassComparison(first, second)
