"""Everything the report shows, computed from a model, a circuit and the circuit's data.

Assembly only: shares come from :class:`~captum_groups.LayerGroupConductance`,
fidelity from :mod:`captum_groups.circuits` (``masking_fidelity``,
``edge_fidelity``), pictures from :mod:`captum_groups.viz` (``render_circuit``,
``plot_group_exemplars``).

A group's **share of the target** is the part of the target's rise from the
zero baseline, ``F(x) - F(0)`` summed over the evaluation images, that flows
through the group's neurons: its layer conductance (Captum's
``LayerConductance`` summed over the group's elements) summed over the same
images, divided by that rise. The groups of a layer that every path to the
target crosses would add up to 1 if they covered the whole layer (completeness);
a circuit's groups cover its core neurons only.

The **evaluation images** are those the model predicts as the target class
(the images ``build_circuit`` draws its exemplars from, with
``predicted_only``), at most ``fidelity_images`` of them; for a group target,
the first ``fidelity_images`` images. The fidelity score is the fraction still
predicted as the target (1.0 for the intact model), or the group target's
mean value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._checks import ParameterError
from .._data import Data, examples_at, iter_batches
from .._deprecation import apply_renames
from .._hooks import layer_outputs, model_outputs, preserve_buffers, run_to_layer
from ..attr import LayerGroupConductance
from ..circuits import (
    TARGET,
    Circuit,
    EdgeFidelityResult,
    FidelityResult,
    edge_fidelity,
    masking_fidelity,
)
from ..circuits.build import none_predicted
from ..discovery import TopExemplars
from ..groups import NeuronGroup
from ..viz import plot_group_exemplars, render_circuit
from .figures import fidelity_curves_figure
from .images import array_uri, figure_uri
from .layout import GraphLayout, layered_layout
from .settings import RENAMED, ReportSettings

__all__ = [
    "FidelityRow",
    "FidelitySection",
    "NodeCard",
    "ReportContent",
    "TargetCard",
    "assemble",
    "evaluation_images",
    "images_at",
    "target_shares",
]


@dataclass(frozen=True)
class NodeCard:
    """What the report says about one group."""

    node: str
    key: str
    layer: str
    label: str | None
    neurons: tuple[int, ...]
    weights: tuple[float, ...] | None
    share: float
    feeds: tuple[tuple[str, float], ...]
    fed_by: tuple[tuple[str, float], ...]
    exemplar_values: tuple[float, ...]
    exemplars: str | None
    overlays: str | None
    rendering: str | None
    top_crop: str | None


@dataclass(frozen=True)
class TargetCard:
    """What the report says about the target node."""

    key: str
    description: str
    n_images: int
    mean_rise: float
    fed_by: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class FidelityRow:
    """The whole circuit's masking and retaining results for one scope."""

    scope: str
    masked: FidelityResult
    retained: FidelityResult


@dataclass(frozen=True)
class FidelitySection:
    """Fidelity curves, the whole circuit's numbers, and the edge-weight fidelity."""

    masking_figure: str
    retaining_figure: str
    rows: tuple[FidelityRow, ...]
    edge: EdgeFidelityResult | None
    edge_figure: str | None
    n_images: int
    draws: int


@dataclass(frozen=True)
class ReportContent:
    """Everything the template draws."""

    circuit: Circuit
    title: str
    layout: GraphLayout
    target: TargetCard
    cards: tuple[NodeCard, ...]
    fidelity: FidelitySection
    settings: dict


def _device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def images_at(data: Data, indices: list[int]) -> Tensor:
    """The images at some data-set indices (:func:`captum_groups._data.examples_at`: a
    tensor's rows, a Dataset's items, a DataLoader's items as its sampler numbers them)."""
    return examples_at(data, indices)


def evaluation_images(
    model: nn.Module, circuit: Circuit, data: Data, limit: int, batch_size: int
) -> Tensor:
    """The images the report evaluates on (see the module docstring), on the model's device."""
    device = _device(model)
    kept: list[Tensor] = []
    count = 0
    predicted: Counter[int] = Counter()
    for batch in iter_batches(data, batch_size):
        batch = batch.to(device)
        if isinstance(circuit.target, int):
            with torch.no_grad(), preserve_buffers(model):
                classes = model(batch).argmax(1)
            predicted.update(classes.tolist())
            batch = batch[classes == circuit.target]
        kept.append(batch[: limit - count])
        count += len(kept[-1])
        if count >= limit:
            break
    if count == 0:
        raise ParameterError("target", none_predicted(circuit.target, predicted))
    return torch.cat(kept)


def _target_values(model: nn.Module, target: int | NeuronGroup, inputs: Tensor) -> Tensor:
    if isinstance(target, int):
        return model_outputs(model, inputs)[:, target]
    return target(layer_outputs(model, inputs, target.resolve(model)))


def target_shares(
    model: nn.Module, circuit: Circuit, inputs: Tensor, n_steps: int = 32, batch_size: int = 64
) -> tuple[dict[str, float], float]:
    """Each group's share of the target's rise from the zero baseline, and the mean rise.

    Parameters
    ----------
    model : nn.Module
        The model.
    circuit : Circuit
        The circuit.
    inputs : Tensor
        Evaluation images.
    n_steps : int
        Integration steps of the layer conductance.
    batch_size : int
        Images per conductance call.

    Returns
    -------
    shares : dict of node id to float
        Summed conductance through the group over the summed rise.
    mean_rise : float
        Mean of ``F(x) - F(0)`` over the images.
    """
    rise = _target_values(model, circuit.target, inputs) - _target_values(
        model, circuit.target, torch.zeros_like(inputs)
    )
    total_rise = float(rise.sum())
    shares: dict[str, float] = {}
    for layer in circuit.layers:
        nodes = circuit.node_ids(layer)
        if not nodes:
            continue
        groups = [circuit.nodes[node] for node in nodes]
        conductance = LayerGroupConductance(model, layer)
        summed = torch.zeros(len(groups), dtype=torch.float64)
        for start in range(0, len(inputs), batch_size):
            flows = conductance.attribute(
                inputs[start : start + batch_size],
                groups,
                target=circuit.target,
                n_steps=n_steps,
                internal_batch_size=batch_size * 8,
            )
            summed += flows.reshape(len(flows), -1).sum(0).double().cpu()
        shares.update(
            (node, float(value) / total_rise if total_rise else float("nan"))
            for node, value in zip(nodes, summed, strict=True)
        )
    return shares, total_rise / len(inputs)


@dataclass(frozen=True)
class _ExemplarPictures:
    values: tuple[float, ...] = ()
    top_crop: str | None = None
    montage: str | None = None
    overlays: str | None = None


def _as_picture(crop: Tensor) -> np.ndarray:
    """One crop (C, H, W) scaled to [0, 1] for display, as (H, W, C)."""
    crop = crop.detach().cpu().float()
    crop = (crop - crop.min()) / (crop.max() - crop.min()).clamp_min(1e-12)
    return crop.permute(1, 2, 0).numpy()


def _exemplar_pictures(
    model: nn.Module, circuit: Circuit, data: Data, node: str, n_steps: int
) -> _ExemplarPictures:
    """A node's stored exemplar crops: their group values, the top crop, and two montages."""
    items = circuit.exemplars.get(node, [])
    if not items:
        return _ExemplarPictures()
    group = circuit.nodes[node]
    images = images_at(data, [index for index, _ in items]).to(_device(model))
    boxes = torch.tensor([box for _, box in items], dtype=torch.long)
    exemplars = TopExemplars(
        torch.zeros(1, len(items)), torch.arange(len(items))[None], boxes[None]
    )
    crops = exemplars.inputs(images, 0)
    values = group(layer_outputs(model, crops, group.resolve(model))).cpu()
    exemplars = TopExemplars(values[None], exemplars.indices, exemplars.boxes)
    montage = plot_group_exemplars(exemplars, images, [group], n=len(items))
    overlays = plot_group_exemplars(
        exemplars,
        images,
        [group],
        n=len(items),
        model=model,
        attribution="integrated_gradients",
        n_steps=n_steps,
    )
    return _ExemplarPictures(
        tuple(float(v) for v in values),
        array_uri(_as_picture(crops[0])),
        figure_uri(montage),
        figure_uri(overlays),
    )


def _curve_circuits(circuit: Circuit, points: int) -> list[Circuit]:
    """Nested circuits: the top-j inputs of every node, for a few j, ending with the circuit."""
    in_degree = max((len(circuit.in_edges(node)) for node in [TARGET, *circuit.nodes]), default=1)
    steps = sorted({int(round(j)) for j in np.linspace(1, in_degree, min(in_degree, points))})
    return [circuit.prune(top_k=j) for j in steps[:-1]] + [circuit]


def _fidelity(
    model: nn.Module,
    circuit: Circuit,
    inputs: Tensor,
    settings: ReportSettings,
    tick: Callable[[], None],
) -> FidelitySection:
    """The masking and retaining curves, the whole circuit's rows and the edge-weight fidelity."""
    curves: dict[str, dict[str, dict[int, FidelityResult]]] = {"mask": {}, "retain": {}}
    last: dict[str, dict[str, FidelityResult]] = {}
    for mode in ("mask", "retain"):
        for pruned in _curve_circuits(circuit, settings.n_points):
            report = masking_fidelity(
                model,
                pruned,
                inputs,
                mode=mode,
                n_draws=settings.n_draws,
                random_state=settings.random_state,
            )
            for result in report:
                curves[mode].setdefault(result.scope, {})[result.n_neurons] = result
            last[mode] = {result.scope: result for result in report}
            tick()
    figures = {
        mode: figure_uri(
            fidelity_curves_figure(
                {
                    scope: [by_count[n] for n in sorted(by_count)]
                    for scope, by_count in by_scope.items()
                },
                mode,
            )
        )
        for mode, by_scope in curves.items()
    }
    rows = tuple(
        FidelityRow(scope, result, last["retain"][scope]) for scope, result in last["mask"].items()
    )
    edge = _edge_fidelity(model, circuit, inputs, settings)
    tick()
    return FidelitySection(
        figures["mask"],
        figures["retain"],
        rows,
        edge,
        figure_uri(edge.plot()) if edge is not None else None,
        len(inputs),
        settings.n_draws,
    )


def _edge_fidelity(
    model: nn.Module, circuit: Circuit, inputs: Tensor, settings: ReportSettings
) -> EdgeFidelityResult | None:
    """The target's edge-weight fidelity over subsets of 1, 2, 5 and 10 neurons (with more
    than one draw: a correlation needs several points)."""
    if settings.n_draws <= 1:
        return None
    width = run_to_layer(model, inputs[:1], model.get_submodule(circuit.layers[-1]))[0].shape[1]
    sizes = tuple(s for s in (1, 2, 5, 10) if s <= width)
    return edge_fidelity(
        model,
        circuit,
        inputs,
        TARGET,
        sizes,
        settings.n_draws,
        settings.n_steps,
        settings.random_state,
    )


def _describe_target(circuit: Circuit) -> str:
    if isinstance(circuit.target, int):
        return f"class {circuit.target}"
    group = circuit.target
    return f"{group.name or 'group'} of {group.layer} ({len(group)} neurons)"


def _caption(circuit: Circuit, node: str, share: float) -> tuple[str, ...]:
    group = circuit.nodes[node]
    lines = [node if group.label is None else f"{node} · {group.label}"]
    lines.append(f"{len(group)} neuron{'s' if len(group) > 1 else ''} · {share:+.0%}")
    return tuple(lines)


def _node_card(
    circuit: Circuit,
    node: str,
    key: int,
    shares: dict[str, float],
    pictures: _ExemplarPictures,
    rendering: str | None,
) -> NodeCard:
    """The card of one node: its group, share, edges, pictures and rendering."""
    group = circuit.nodes[node]
    return NodeCard(
        node=node,
        key=f"card-{key + 1}",
        layer=str(group.layer),
        label=group.label,
        neurons=group.indices,
        weights=group.weights,
        share=shares[node],
        feeds=tuple(circuit.out_edges(node).items()),
        fed_by=tuple(circuit.in_edges(node).items()),
        exemplar_values=pictures.values,
        exemplars=pictures.montage,
        overlays=pictures.overlays,
        rendering=rendering,
        top_crop=pictures.top_crop,
    )


def _layout(
    circuit: Circuit, cards: list[NodeCard], shares: dict[str, float], mean_rise: float
) -> GraphLayout:
    """The layered drawing: each node with its top crop (or rendering) and caption."""
    return layered_layout(
        circuit,
        images={
            card.node: card.top_crop or card.rendering
            for card in cards
            if card.top_crop or card.rendering
        },
        captions={
            TARGET: (_describe_target(circuit), f"rise {mean_rise:+.3g}"),
            **{node: _caption(circuit, node, shares[node]) for node in circuit.nodes},
        },
    )


def _renderings(
    model: nn.Module, circuit: Circuit, side: int, settings: ReportSettings
) -> dict[str, str]:
    """Each node's Lucent rendering as a data URI (none when ``render_steps`` is 0)."""
    if settings.render_steps == 0 or not circuit.nodes:
        return {}
    size = settings.render_size if settings.render_size is not None else min(max(side, 24), 128)
    drawn = render_circuit(
        model,
        circuit,
        size=size,
        steps=settings.render_steps,
        random_state=settings.random_state,
    )
    return {node: array_uri(image) for node, image in drawn.items()}


def _recorded(settings: ReportSettings, side: int) -> dict:
    """The report's settings as recorded on the page (the rendering size resolved)."""
    recorded = settings.to_dict()
    if recorded["render_size"] is None:
        recorded["render_size"] = min(max(side, 24), 128)
    return recorded


def assemble(
    model: nn.Module,
    circuit: Circuit,
    data: Data,
    settings: ReportSettings | None = None,
    progress: bool = True,
    **options: Any,
) -> ReportContent:
    """Compute everything the report shows.

    Parameters
    ----------
    model : nn.Module
        The model the circuit was built on.
    circuit : Circuit
        The circuit.
    data : Tensor, Dataset or DataLoader
        The data the circuit was built on (its exemplars index it).
    settings : ReportSettings, optional
        What to compute; the integration steps and seed default to the circuit's.
    progress : bool
        Show a progress bar.
    **options
        Any field of :class:`ReportSettings`, applied over ``settings``.

    Returns
    -------
    ReportContent
    """
    options = apply_renames(options, RENAMED, "assemble")
    settings = ReportSettings.merged(settings, options, "assemble").for_circuit(circuit)
    inputs = evaluation_images(model, circuit, data, settings.max_images, settings.batch_size)
    n_curves = len(_curve_circuits(circuit, settings.n_points))
    bar = tqdm(
        total=len(circuit.layers) + len(circuit.nodes) + 2 * n_curves + 2,
        desc="report",
        disable=not progress,
    )
    with bar:

        def tick(stage: str = "") -> None:
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        shares, mean_rise = target_shares(
            model, circuit, inputs, settings.n_steps, settings.batch_size
        )
        bar.update(len(circuit.layers))
        renderings = _renderings(model, circuit, int(inputs.shape[-1]), settings)
        tick("renderings")
        cards = []
        for key, node in enumerate(circuit.nodes):
            pictures = _exemplar_pictures(model, circuit, data, node, settings.n_steps)
            cards.append(_node_card(circuit, node, key, shares, pictures, renderings.get(node)))
            tick("exemplars")
        fidelity = _fidelity(model, circuit, inputs, settings, lambda: tick("fidelity"))
    target = TargetCard(
        "card-0",
        _describe_target(circuit),
        len(inputs),
        mean_rise,
        tuple(circuit.in_edges(TARGET).items()),
    )
    title = f"Circuit of {_describe_target(circuit)} in {circuit.params.get('model', 'the model')}"
    layout = _layout(circuit, cards, shares, mean_rise)
    recorded = _recorded(settings, int(inputs.shape[-1]))
    return ReportContent(circuit, title, layout, target, tuple(cards), fidelity, recorded)
