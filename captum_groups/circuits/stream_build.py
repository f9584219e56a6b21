"""``build_stream_circuit``: a transformer's circuit of heads and MLP groups, its edges the
residual-stream paths between them, scored by EAP-IG between clean and corrupted inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._model.capture import model_outputs
from .._model.guards import frozen_parameters, guarded_call
from .._validation.checks import ParameterError
from ..groups import NeuronGroup
from ._ids import NEXT_TOKEN
from .corruption import corrupt
from .edge_scores import eap_scores, metric_ends, metric_of
from .graph import Circuit
from .settings import CircuitSettings
from .stream import ROLES, StreamGraph
from .stream_groups import mlp_groups

__all__ = ["build_stream_circuit", "stream_inputs"]


def build_stream_circuit(
    model: nn.Module,
    data: Tensor,
    target: int | str,
    corrupted: Tensor | None = None,
    *,
    positions: Tensor | None = None,
    groups: Sequence[NeuronGroup] = (),
    settings: CircuitSettings | None = None,
    progress: bool = True,
    **options: Any,
) -> Circuit:
    """The circuit of a transformer for a target: its heads and MLP groups as nodes, every
    residual-stream path between them as an edge, scored by EAP-IG.

    Each edge's weight estimates how much the target's logit (above the mean logit)
    drops when the edge is patched from the corrupted input (Hanna, Pezzelle and
    Belinkov 2024; see :func:`~captum_groups.circuits.edge_scores.eap_scores`); the
    circuit holds every edge of the graph, so that :func:`faithfulness_curve` can grow
    it strongest first and :meth:`Circuit.prune` can keep the strongest.

    Parameters
    ----------
    model : nn.Module
        A pre-norm transformer :func:`~captum_groups.transformers.hooked` knows (or
        its hooked form); not changed.
    data : Tensor
        Clean inputs: token ids (N, T) or images (N, C, H, W).
    target : int or "next_token"
        A class (output index), or, for a language model, each position's next token.
    corrupted : Tensor, optional
        The corrupted input of each example (same shape as ``data``); by default made
        by ``settings.corrupt`` (:func:`~captum_groups.circuits.corruption.corrupt`).
        For a class, ``"resample"`` draws from the examples the model predicts as
        another class.
    positions : Tensor, optional
        Boolean (N, T): where a model with outputs per position is read.
    groups : sequence of NeuronGroup, optional
        Groups of heads or MLP neurons as nodes (see :class:`StreamGraph`). With
        ``mlp_groups="neurflow"`` each MLP's core neurons are grouped NeurFlow's way
        (:func:`~captum_groups.circuits.stream_groups.mlp_groups`, with the settings'
        ``tau``, ``k`` and ``n_groups``), its other neurons one node; ``groups`` then
        holds head groups only.
    settings : CircuitSettings, optional
        ``eap_steps``, ``eap_path`` and ``method`` (the integration; ``eap_steps=1``:
        EAP; ``eap_path``: each node's output interpolated on its own, or the embedding),
        ``predicted_only`` (a class's circuit reads only the examples predicted as
        it), ``corrupt`` and ``random_state`` (the corrupted input), ``batch_size``
        (examples per pass), ``mlp_groups``, ``tau``, ``k`` and ``n_groups`` (the MLP
        groups, with ``mlp_groups="neurflow"``).
    progress : bool
        Accepted for symmetry with :func:`build_circuit`; the build is a few passes.
    **options
        Fields of :class:`CircuitSettings`, overriding ``settings``.

    Returns
    -------
    Circuit
        Nodes: ``embed``, heads ``aL.hH`` and their inputs ``aL.hH.q``, ``.k``, ``.v``,
        MLP groups ``mL`` (or ``mL.gI``); every edge; ``params["procedure"] ==
        "EAP-IG"``; the settings.

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt, induction_data
    >>> tokens, copyable = induction_data(32, random_state=0)
    >>> circuit = build_stream_circuit(tiny_gpt(), tokens, "next_token", positions=copyable,
    ...                                corrupt="shuffle", progress=False)
    >>> len(circuit.edges), circuit.settings.corrupt  # 110 through the stream, 24 into heads
    (134, 'shuffle')
    """
    settings = CircuitSettings.merged(settings, options, "build_stream_circuit")
    with guarded_call(model, "build_stream_circuit", needs_grad=True), frozen_parameters(model):
        clean, corrupted, positions, how = stream_inputs(
            model, data, target, corrupted, positions, settings
        )
        metric = metric_of(target, clean, positions)
        graph = _graph(model, clean, corrupted, metric, groups, settings)
        reference = graph.reference(corrupted)
        scores = eap_scores(graph, clean, reference, metric, settings.eap_steps,
                            settings.method, path=settings.eap_path)  # fmt: skip
        clean_value, corrupted_value = metric_ends(graph, clean, reference, metric)
    params = {
        "procedure": "EAP-IG",
        "examples": len(clean),
        "metric": "logit above the mean logit",
        "clean_metric": clean_value,
        "corrupted_metric": corrupted_value,
        "positions": "given" if positions is not None else "default",
    }
    nodes, edges = _graph_of(graph, scores.tolist())
    return Circuit(
        target,
        graph.layers,
        nodes,
        edges,
        params=params,
        settings=settings.replace(corrupt=how),
    )


def _graph(
    model: nn.Module,
    clean: Tensor,
    corrupted: Tensor,
    metric: Callable[[Tensor], Tensor],
    groups: Sequence[NeuronGroup],
    settings: CircuitSettings,
) -> StreamGraph:
    """The stream graph of the build: with the groups given, and the MLPs' found NeurFlow's
    way when the settings ask."""
    if isinstance(groups, str):
        raise ParameterError(
            "groups",
            f"groups must be NeuronGroups, got {groups!r} (MLP groups found "
            "NeurFlow's way: mlp_groups='neurflow')",  # fmt: skip
        )
    groups = list(groups)
    if settings.mlp_groups == "neurflow":
        if any(".mlp." in str(group.layer) for group in groups):
            raise ParameterError(
                "groups",
                "groups holds MLP groups, and mlp_groups='neurflow' finds them; "
                "give one or the other",  # fmt: skip
            )
        whole = StreamGraph(model, clean, groups, settings.batch_size)
        groups += mlp_groups(whole, clean, whole.reference(corrupted), metric, settings.tau,
                             settings.k, settings.groups_for)  # fmt: skip
    return StreamGraph(model, clean, groups, settings.batch_size)


def _graph_of(
    graph: StreamGraph, scores: list[float]
) -> tuple[dict[str, NeuronGroup], dict[tuple[str, str], float]]:
    """The circuit's nodes and edges: every component, each head group's query, key and
    value inputs as nodes of their own (``aL.hH.q`` at ``hook_q``, ...), each edge through
    the stream with its score, and each input's edge into its heads weighing the sum of
    the scores of the edges into that input (what patching the whole input is estimated
    to cost)."""
    nodes: dict[str, NeuronGroup] = {}
    edges = {edge: float(w) for edge, w in zip(graph.edges, scores, strict=True)}
    for node in graph.nodes:
        if node.kind == "attn":
            for role in ROLES:
                name = f"{node.id}.{role}"
                layer = str(node.group.layer).replace("hook_z", f"hook_{role}")
                nodes[name] = node.group.replace(layer=layer, name=name)
                edges[name, node.id] = sum(w for (_, r), w in edges.items() if r == name)
        nodes[node.id] = node.group
    return nodes, edges


def stream_inputs(
    model: nn.Module,
    data: Tensor,
    target: int | str,
    corrupted: Tensor | None,
    positions: Tensor | None,
    settings: CircuitSettings,
) -> tuple[Tensor, Tensor, Tensor | None, str]:
    """The clean and corrupted inputs :func:`build_stream_circuit` reads (a class's
    predicted examples only, when asked; the corrupted ones made as ``settings.corrupt``
    says, seeded), the positions that go with them, and how the corrupted ones were made:
    the same every time for the same arguments, so a report evaluates the circuit on
    the inputs it was built from.

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt, induction_data
    >>> tokens, _ = induction_data(4)
    >>> settings = CircuitSettings(corrupt="shuffle", random_state=0)
    >>> clean, corrupted, _, how = stream_inputs(tiny_gpt(), tokens, "next_token", None, None,
    ...                                          settings)
    >>> how, bool((corrupted.sort(1).values == clean.sort(1).values).all())
    ('shuffle', True)
    """
    if not isinstance(data, Tensor) or data.ndim < 2 or len(data) == 0:
        raise ParameterError("data", "data must be a batch of inputs (N, ...), a tensor")
    if data.is_floating_point() and not torch.isfinite(data).all():
        raise ParameterError("data", "data holds NaN or infinite values")
    if corrupted is not None and (
        not isinstance(corrupted, Tensor) or corrupted.shape != data.shape
        or corrupted.dtype != data.dtype
    ):  # fmt: skip
        raise ParameterError(
            "corrupted",
            f"corrupted must be a tensor like data ({data.dtype} "
            f"{tuple(data.shape)}), one corrupted input per example",  # fmt: skip
        )
    keep, pool = None, None
    if target != NEXT_TOKEN and settings.predicted_only:
        outputs = model_outputs(model, data, settings.batch_size, "data")
        if outputs.ndim == 2:
            predicted = outputs.argmax(-1)
            keep = predicted == target
            if not keep.any():
                raise ParameterError(
                    "target",
                    f"no example of data is predicted as class {target}; pass "
                    f"predicted_only=False to read every example",  # fmt: skip
                )
            pool = data[~keep] if (~keep).any() else None
    clean = data if keep is None else data[keep]
    if corrupted is not None:
        return clean, (corrupted if keep is None else corrupted[keep]), _kept(positions, keep), \
            settings.corrupt or "given"  # fmt: skip
    how = settings.corrupt or "resample"
    made = corrupt(clean, how, settings.random_state, pool=pool)
    return clean, made, _kept(positions, keep), how


def _kept(positions: Tensor | None, keep: Tensor | None) -> Tensor | None:
    return positions if positions is None or keep is None else positions[keep]
