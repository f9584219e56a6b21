"""The report of a circuit through the residual stream: ``report.html`` and ``circuit.json``.

What it shows: the circuit drawn at the size that keeps 80% of the clean - corrupted
difference (its strongest edges), the faithfulness curve against random circuits, the
strongest edges, and a card per head and MLP group of the drawn circuit: the head's
mean attention pattern (for a ViT, the class token's attention over the patches), and
for token inputs the contexts where the node is most active, each token shaded by its
value (Neuronpedia's top-activating contexts).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._model.capture import layer_activations
from ..circuits import Circuit, FaithfulnessCurve, faithfulness_curve, stream_inputs
from ..files import check_folder_path, write_atomic
from ..transformers import hooked, token_exemplars, token_exemplars_html
from .html import environment
from .images import figure_uri

__all__ = ["StreamCard", "curve_sizes", "drawn_circuit", "write_stream_report"]

LEVEL = 0.8
"""The faithfulness the drawn circuit keeps (the size of the smallest one that does)."""


@dataclasses.dataclass(frozen=True)
class StreamCard:
    """One node of the drawn circuit: its id, what it is, its edges, its pictures.

    Examples
    --------
    >>> card = StreamCard("a1.h2", "head 2 of block 1", [("target", 1.5)], None, None)
    >>> card.node, card.outgoing[0][1]
    ('a1.h2', 1.5)
    """

    node: str
    description: str
    outgoing: list[tuple[str, float]]
    pattern: str | None
    contexts: str | None


def curve_sizes(total: int, points: int = 14) -> list[int]:
    """About ``points`` sizes from one edge to all, denser where circuits are small.

    Examples
    --------
    >>> curve_sizes(110, 5)
    [1, 3, 10, 34, 110]
    """
    fractions = np.geomspace(1 / total, 1.0, max(points, 2))
    return sorted({max(1, round(total * f)) for f in fractions} | {total})


def drawn_circuit(circuit: Circuit, size: int) -> Circuit:
    """The circuit's ``size`` strongest edges through the stream (as many as keep
    :data:`LEVEL`, in the report), the heads' inputs they reach, and what connects to the
    target.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> nodes = {"a": NeuronGroup("x", [0]), "b": NeuronGroup("y", [0])}
    >>> full = Circuit(0, ["x", "y"], nodes, {("a", "b"): 0.1, ("b", "target"): 2.0})
    >>> drawn_circuit(full, 1).edges
    mappingproxy({('b', 'target'): 2.0})
    """
    stream = set(circuit.stream_edges())
    kept = dict(sorted(((e, circuit.edges[e]) for e in stream), key=lambda i: -abs(i[1]))[:size])
    reached = {upper for _, upper in kept}  # the heads' inputs among them lead into their heads
    kept.update({e: w for e, w in circuit.edges.items() if e not in stream and e[0] in reached})
    return circuit.replace(edges=kept).prune()


def _pattern_figure(pattern: np.ndarray, images: bool, title: str) -> Figure:
    """A head's mean pattern (queries x keys), or for a ViT the class token's row as the
    patch grid."""
    figure = Figure(figsize=(2.6, 2.4))
    axes = figure.subplots()
    side = math.isqrt(pattern.shape[1] - 1)
    if images and side * side == pattern.shape[1] - 1:
        axes.imshow(pattern[0, 1:].reshape(side, side), cmap="Oranges")
        axes.set_xlabel("class token's attention over patches", fontsize=7)
    else:
        axes.imshow(pattern, cmap="Oranges", vmin=0)
        axes.set_xlabel("key position", fontsize=7)
        axes.set_ylabel("query position", fontsize=7)
    axes.set_title(title, fontsize=8)
    axes.tick_params(labelsize=6)
    figure.tight_layout()
    return figure


def _cards(
    model: nn.Module, drawn: Circuit, clean: Tensor, decode: Callable[[int], str]
) -> list[StreamCard]:
    """A card per head group and MLP group of the drawn circuit."""
    wrapped = hooked(model)
    tokens = not clean.is_floating_point()
    sample = clean[:64]
    patterns: dict[str, np.ndarray] = {}
    cards = []
    for node, group in drawn.nodes.items():
        layer = str(group.layer)
        if not layer.endswith((".attn.hook_z", ".mlp.hook_post")):
            continue
        block = layer.split(".")[1]
        pattern_uri = None
        if layer.endswith("hook_z"):
            point = f"blocks.{block}.attn.hook_pattern"
            if point not in patterns:
                patterns[point] = layer_activations(wrapped, point, sample).mean(0).numpy()
            mean = patterns[point][list(group.indices)].mean(0)
            figure = _pattern_figure(mean, not tokens, f"{node}: mean attention pattern")
            pattern_uri = figure_uri(figure, dpi=100)
        contexts = None
        if tokens:
            found = token_exemplars(wrapped, group, clean, k=6)
            contexts = token_exemplars_html(found, clean, decode)
        units = "head" if layer.endswith("hook_z") else "MLP neuron"
        what = f"{len(group)} {units}{'s' if len(group) != 1 else ''} of block {block}"
        outgoing = sorted(drawn.out_edges(node).items(), key=lambda i: -abs(i[1]))
        cards.append(StreamCard(node, what, outgoing, pattern_uri, contexts))
    return cards


def write_stream_report(
    model: nn.Module,
    circuit: Circuit,
    data: Tensor,
    out: str | Path,
    corrupted: Tensor | None = None,
    *,
    positions: Tensor | None = None,
    n_random: int = 20,
    decode: Callable[[int], str] = str,
    command: str | None = None,
    points: int = 14,
    curve: FaithfulnessCurve | None = None,
) -> tuple[Path, Path]:
    """Evaluate, draw and write the report of a circuit built by
    :func:`~captum_groups.circuits.build_stream_circuit`.

    Parameters
    ----------
    model : nn.Module
        The model the circuit was built on.
    circuit : Circuit
        The circuit (its settings say how the corrupted input was made).
    data : Tensor
        The data it was built from (token ids or images).
    out : str or Path
        The folder to write ``report.html`` and ``circuit.json`` into.
    corrupted : Tensor, optional
        The corrupted input it was built with, when it was given rather than made.
    positions : Tensor, optional
        The positions it was built with.
    n_random : int
        Random circuits per size of the faithfulness curve.
    decode : callable
        Token id -> text, for the contexts of a language model's nodes.
    command : str, optional
        The command line that made the report, shown on the page.
    points : int
        About how many sizes the faithfulness curve has, from one edge to all, denser
        where circuits are small.
    curve : FaithfulnessCurve, optional
        The circuit's faithfulness curve on these inputs, when it is computed already
        (then ``points`` and ``n_random`` are not used).

    Returns
    -------
    tuple of Path
        ``report.html`` and ``circuit.json``.

    Examples
    --------
    >>> import tempfile
    >>> from captum_groups.circuits import build_stream_circuit
    >>> from captum_groups.induction import tiny_gpt, induction_prompts
    >>> model, (clean, corrupted, copyable) = tiny_gpt(), induction_prompts(20)
    >>> circuit = build_stream_circuit(model, clean, "next_token", corrupted, positions=copyable,
    ...                                eap_steps=5, progress=False)
    >>> html, saved = write_stream_report(model, circuit, clean, tempfile.mkdtemp(), corrupted,
    ...                                   positions=copyable, n_random=3, points=4)
    >>> html.name, Circuit.from_json(saved.read_text()) == circuit
    ('report.html', True)
    """
    started = time.perf_counter()
    folder = check_folder_path(out)
    target = circuit.target
    clean, corrupted, positions, _ = stream_inputs(
        model,
        data,
        target,
        corrupted,
        positions,
        circuit.settings,  # type: ignore[arg-type]
    )
    total = len(circuit.stream_edges())
    if curve is None:
        seed = circuit.settings.random_state if circuit.settings else None
        sizes = curve_sizes(total, points)
        curve = faithfulness_curve(model, circuit, clean, corrupted, positions, sizes, n_random,
                                   seed)  # fmt: skip
    drawn = drawn_circuit(circuit, curve.smallest(LEVEL) or total)
    page = (
        environment()
        .get_template("stream_report.html.j2")
        .render(
            circuit=circuit,
            drawn=drawn,
            curve=curve,
            curve_rows=list(
                zip(curve.sizes, curve.recovered, curve.random_mean, curve.random_ci, strict=True)
            ),  # fmt: skip
            target="each position's next token" if target == "next_token" else f"class {target}",
            drawing=figure_uri(drawn.plot(), dpi=90),
            curve_figure=figure_uri(curve.plot(), dpi=100),
            strongest=sorted(circuit.edges.items(), key=lambda i: -abs(i[1]))[:25],
            cards=_cards(model, drawn, clean, decode),
            examples=len(clean),
            command=command,
            seconds=time.perf_counter() - started,
            settings=json.dumps(circuit.settings.to_dict() if circuit.settings else {}, indent=1),
        )
    )
    folder.mkdir(parents=True, exist_ok=True)
    circuit_file = write_atomic(folder / "circuit.json", circuit.to_json())
    write_atomic(folder / "faithfulness.json", json.dumps(curve.to_dict(), indent=1))
    return write_atomic(folder / "report.html", page), circuit_file
