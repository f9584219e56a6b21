"""Everything the report shows, computed from a model, a circuit and the circuit's data.

Assembly only: shares come from :class:`~captum_groups.LayerGroupConductance`,
fidelity from :mod:`captum_groups.circuits` (``masking_fidelity``,
``edge_fidelity``, on cached activations), renderings from :mod:`captum_groups.viz`
(``render_circuit``) and exemplar pictures from :mod:`.pictures`.

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

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lucent.optvis import transform as lucent_transform
from torch import Tensor, nn
from tqdm import tqdm

from .._model.capture import layer_outputs, model_outputs, run_to_layer
from .._model.guards import preserve_buffers
from .._validation.checks import ParameterError
from .._validation.deprecation import apply_renames
from ..attr.layer_conductance import conductances
from ..circuits import (
    TARGET,
    Circuit,
    EdgeFidelityResult,
    FidelityResult,
    edge_fidelity,
    masking_curves,
)
from ..circuits.requests import no_image_of
from ..data import Data, examples_at, iter_batches
from ..groups import NeuronGroup
from ..viz import render_circuit
from .figures import fidelity_curves_figure
from .images import array_uri, figure_uri
from .layout import GraphLayout, layered_layout
from .pictures import ExemplarPictures, exemplar_pictures
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
    "overlaps",
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
    overlaps: tuple[tuple[str, int, str], ...] = ()
    """Groups of the same layer sharing neurons with this one: (node, shared neurons, how:
    "inside" it, "contains" it, or "overlaps")."""


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
    curves: dict[str, dict[str, tuple[FidelityResult, ...]]]
    """mode -> scope -> the curve's points, fewest neurons first."""
    notes: tuple[str, ...]
    """Why a curve has fewer points than asked, per scope where it does."""


@dataclass(frozen=True)
class ReportContent:
    """Everything the template draws.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> content = assemble(model, circuit, x, render_steps=0, n_draws=2, progress=False)
    >>> content.circuit is circuit, len(content.cards) == len(circuit.nodes)
    (True, True)
    """

    circuit: Circuit
    title: str
    layout: GraphLayout
    target: TargetCard
    cards: tuple[NodeCard, ...]
    fidelity: FidelitySection
    settings: dict
    timing: dict[str, float]
    """Seconds each part took: shares, renderings, exemplars, fidelity."""


def _device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def images_at(data: Data, indices: list[int]) -> Tensor:
    """The images at some data-set indices (:func:`captum_groups.data.examples_at`: a
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
        # the circuit's own setting says which advice fits: a circuit built on every image
        # (predicted_only=False) still needs images of its class to measure fidelity on
        settings = circuit.settings
        predicted_only = settings.predicted_only if settings is not None else True
        raise ParameterError("target", no_image_of(circuit.target, predicted, predicted_only))
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

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> shares, rise = target_shares(model, circuit, x[y == 3][:10], n_steps=8)
    >>> sorted(shares) == sorted(circuit.nodes), rise > 0
    (True, True)
    """
    rise = _target_values(model, circuit.target, inputs) - _target_values(
        model, circuit.target, torch.zeros_like(inputs)
    )
    total_rise = float(rise.sum())
    groups = {
        layer: [circuit.nodes[n] for n in circuit.node_ids(layer)] for layer in circuit.layers
    }
    groups = {layer: members for layer, members in groups.items() if members}
    summed = {
        layer: torch.zeros(len(members), dtype=torch.float64) for layer, members in groups.items()
    }
    for start in range(0, len(inputs), batch_size):
        # every layer's conductance from one integrated pass per batch of images
        flows = conductances(
            model,
            groups,
            inputs[start : start + batch_size],
            target=circuit.target,
            n_steps=n_steps,
            internal_batch_size=batch_size * 8,
        )
        for layer, values in flows.items():
            summed[layer] += values.reshape(len(values), -1).sum(0).double().cpu()
    shares: dict[str, float] = {}
    for layer, values in summed.items():
        shares.update(
            (node, float(value) / total_rise if total_rise else float("nan"))
            for node, value in zip(circuit.node_ids(layer), values, strict=True)
        )
    return shares, total_rise / len(inputs)


def _curve_circuits(circuit: Circuit, points: int) -> list[Circuit]:
    """Nested circuits: the top-j inputs of every node, for a few j, ending with the circuit."""
    in_degree = max((len(circuit.in_edges(node)) for node in [TARGET, *circuit.nodes]), default=1)
    steps = sorted({int(round(j)) for j in np.linspace(1, in_degree, min(in_degree, points))})
    return [circuit.prune(n=j) for j in steps[:-1]] + [circuit]


def _fidelity(
    model: nn.Module,
    circuit: Circuit,
    inputs: Tensor,
    settings: ReportSettings,
    tick: Callable[[], None],
) -> FidelitySection:
    """The masking and retaining curves, the whole circuit's rows and the edge-weight fidelity."""
    pruned_circuits = _curve_circuits(circuit, settings.n_points)
    reports = masking_curves(
        model,
        pruned_circuits,
        inputs,
        n_draws=settings.n_draws,
        random_state=settings.random_state,
        batch_size=settings.batch_size,
    )
    by_count: dict[str, dict[str, dict[int, FidelityResult]]] = {"mask": {}, "retain": {}}
    for (mode, _), report in sorted(reports.items()):
        # pruned circuits with the same neurons in a scope mask the same set: one point
        for result in report:
            by_count[mode].setdefault(result.scope, {})[result.n_neurons] = result
        tick()
    last = {
        mode: {r.scope: r for r in reports[(mode, len(pruned_circuits) - 1)]} for mode in by_count
    }
    curves = {
        mode: {scope: tuple(points[n] for n in sorted(points)) for scope, points in scopes.items()}
        for mode, scopes in by_count.items()
    }
    figures = {mode: figure_uri(fidelity_curves_figure(curves[mode], mode)) for mode in curves}
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
        curves,
        _fewer_points(curves["mask"], len(pruned_circuits), settings.n_points),
    )


def _fewer_points(
    curves: dict[str, tuple[FidelityResult, ...]], levels: int, asked: int
) -> tuple[str, ...]:
    """Sentences saying why a scope's curve has fewer points than asked."""
    notes = []
    if levels < asked:
        notes.append(
            f"The circuit's nodes have at most {levels} inputs, so it can be pruned to "
            f"{levels} nested circuits, not {asked}: each curve has at most {levels} points."
        )
    for scope, points in curves.items():
        if len(points) < levels:
            counts = ", ".join(str(p.n_neurons) for p in points)
            notes.append(
                f"{scope}: the nested circuits keep the same neurons here at several pruning "
                f"levels ({counts} neurons in all), so its curve has {len(points)} "
                f"point{'s' if len(points) != 1 else ''}."
            )
    return tuple(notes)


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


def overlaps(circuit: Circuit) -> dict[str, tuple[tuple[str, int, str], ...]]:
    """For each node, the nodes of its layer that share neurons with it: (node, how many
    neurons, "inside" (the other lies within this one), "contains" (this one lies within
    the other) or "overlaps").

    Examples
    --------
    >>> nodes = {"a": NeuronGroup("l", [0, 1, 2]), "b": NeuronGroup("l", [1]),
    ...          "c": NeuronGroup("l", [2, 3]), "d": NeuronGroup("l", [9])}
    >>> overlaps(Circuit(0, ["l"], nodes, {}))["a"]
    (('b', 1, 'inside'), ('c', 1, 'overlaps'))
    """
    found: dict[str, list[tuple[str, int, str]]] = {node: [] for node in circuit.nodes}
    for node, group in circuit.nodes.items():
        mine = set(group.indices)
        for other in circuit.node_ids(group.layer):
            theirs = set(circuit.nodes[other].indices)
            if other == node or not mine & theirs:
                continue
            how = "inside" if theirs <= mine else "contains" if mine <= theirs else "overlaps"
            found[node].append((other, len(mine & theirs), how))
    return {node: tuple(items) for node, items in found.items()}


def _caption(
    circuit: Circuit, node: str, share: float, shared: tuple[tuple[str, int, str], ...]
) -> tuple[str, ...]:
    group = circuit.nodes[node]
    lines = [node if group.label is None else f"{node} · {group.label}"]
    lines.append(f"{len(group)} neuron{'s' if len(group) > 1 else ''} · {share:+.0%}")
    if shared:
        lines.append(f"∩ overlaps {len(shared)} group{'s' if len(shared) > 1 else ''}")
    return tuple(lines)


def _node_card(
    circuit: Circuit,
    node: str,
    key: int,
    shares: dict[str, float],
    pictures: ExemplarPictures,
    rendering: str | None,
    shared: tuple[tuple[str, int, str], ...] = (),
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
        overlaps=shared,
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
            **{
                card.node: _caption(circuit, card.node, shares[card.node], card.overlaps)
                for card in cards
            },
        },
    )


RENDER_SIDE = 64
"""The renderings' default side in pixels, whatever the images': a smaller rendering (24 px)
reads as noise, and a larger one costs more than it shows in a card (at 96 px, twice as
long on resnet18)."""


def _render_side(settings: ReportSettings, side: int) -> int:
    return settings.render_size if settings.render_size is not None else RENDER_SIDE


def _renderings(
    model: nn.Module, circuit: Circuit, side: int, settings: ReportSettings
) -> dict[str, str]:
    """Each node's Lucent rendering as a data URI (none when ``render_steps`` is 0): every
    group of a layer in one optimisation, a decorrelated Fourier image under Lucent's
    standard transforms (jitter, scale, rotation), which keep it from reading as noise."""
    if settings.render_steps == 0 or not circuit.nodes:
        return {}
    drawn = render_circuit(
        model,
        circuit,
        size=_render_side(settings, side),
        steps=settings.render_steps,
        transforms=lucent_transform.standard_transforms,
        random_state=settings.random_state,
    )
    return {node: array_uri(image) for node, image in drawn.items()}


def _recorded(settings: ReportSettings, side: int) -> dict:
    """The report's settings as recorded on the page (the rendering size resolved)."""
    recorded = settings.to_dict()
    recorded["render_size"] = _render_side(settings, side)
    return recorded


@contextmanager
def _timed(timing: dict[str, float], part: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timing[part] = time.perf_counter() - started


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

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> content = assemble(model, circuit, x, render_steps=0, n_draws=2, progress=False)
    >>> sorted(card.node for card in content.cards) == sorted(circuit.nodes)
    True
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
    timing: dict[str, float] = {}
    with bar:

        def tick(stage: str = "") -> None:
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        with _timed(timing, "shares"):
            shares, mean_rise = target_shares(
                model, circuit, inputs, settings.n_steps, settings.batch_size
            )
        bar.update(len(circuit.layers))
        with _timed(timing, "renderings"):
            renderings = _renderings(model, circuit, int(inputs.shape[-1]), settings)
        tick("renderings")
        with _timed(timing, "exemplars"):
            pictures = exemplar_pictures(model, circuit, data, settings.n_steps)
        cards, shared = [], overlaps(circuit)
        for key, node in enumerate(circuit.nodes):
            shown = pictures.get(node, ExemplarPictures())
            cards.append(
                _node_card(circuit, node, key, shares, shown, renderings.get(node), shared[node])
            )
            tick("exemplars")
        with _timed(timing, "fidelity"):
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
    return ReportContent(circuit, title, layout, target, tuple(cards), fidelity, recorded, timing)
