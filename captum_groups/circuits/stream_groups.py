"""Groups of MLP neurons as nodes of a circuit through the stream, found NeurFlow's way.

NeurFlow (Cao et al., ICLR 2025) keeps a layer's *core neurons* (those the target's
integrated gradients rank highest) and clusters them by shared function
(:class:`~captum_groups.discovery.ConceptClustering` on the activations of each one's
top exemplars). In a transformer's MLP the exemplars are (example, position) pairs and
the integrated gradients run, as EAP-IG's do, along the path from the corrupted embedding
to the clean one: a neuron's score is its clean - corrupted change times its mean
gradient, summed over examples and positions. The groups found are given to
:func:`~captum_groups.circuits.build_stream_circuit` as nodes; each MLP's other neurons
form one node of their own (``mL.rest``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from ..discovery import ConceptClustering
from ..groups import NeuronGroup
from .stream import INPUT, CorruptedRun, StreamGraph, chunks

__all__ = ["mlp_groups", "neuron_scores"]


def neuron_scores(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Callable[[Tensor], Tensor],
    n_steps: int = 5,
) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Each MLP neuron's integrated-gradients score for the metric, from the corrupted
    embedding to the clean one (right Riemann sum of ``n_steps``), and each MLP's clean
    activations (N, T, d_mlp), per block; on a graph whose MLPs are whole nodes.

    Examples
    --------
    >>> from captum_groups.circuits import metric_of
    >>> from captum_groups.induction import tiny_gpt, induction_prompts
    >>> clean, corrupted, copyable = induction_prompts(8)
    >>> graph = StreamGraph(tiny_gpt(), clean)
    >>> scores, _ = neuron_scores(graph, clean, graph.reference(corrupted),
    ...                           metric_of("next_token", clean, copyable))
    >>> scores[0].shape
    torch.Size([128])
    """
    assert reference.outputs is not None
    blocks = range(len(graph.model.blocks))
    start = reference.outputs[INPUT][None]
    keep = torch.ones(1, len(graph.edges))
    end = graph.run_all(clean, keep, reference)[1][INPUT]
    paths = [start + step / n_steps * (end - start) for step in range(1, n_steps + 1)]
    scores = {b: torch.zeros(()) for b in blocks}
    clean_post: dict[int, list[Tensor]] = {b: [] for b in blocks}
    with _capturing_posts(graph) as captured:
        # the metric reads every example: a chunk's gradients hold the others' outputs
        held = [graph.held_outputs(clean, keep, reference, values) for values in paths]
        for rows in chunks(len(clean), graph.examples_per_pass):
            part = reference.rows(rows)
            captured.clear()
            with torch.no_grad():
                graph.run(clean[rows], keep, part, start[:, rows])
            corrupted = _first_copy(graph, captured, rows)
            for values, joined in zip(paths, held, strict=True):
                captured.clear()
                given = values[:, rows].clone().requires_grad_(True)
                outputs = joined(rows, graph.run(clean[rows], keep, part, given)[0])
                found = torch.autograd.grad(metric(outputs).sum() / n_steps, captured)
                posts = _first_copy(graph, captured, rows)
                for b in blocks:
                    # a neuron's gradient sits in the copy of its node's input
                    gradient = found[b].view(1, graph.copies, *posts[b].shape)[0].sum(0)
                    change = (posts[b] - corrupted[b]) * gradient
                    scores[b] = scores[b] + change.flatten(0, -2).sum(0)
            for b in blocks:  # the last step is the clean run
                clean_post[b].append(posts[b])
    return scores, {b: torch.cat(clean_post[b]) for b in blocks}


@contextmanager
def _capturing_posts(graph: StreamGraph) -> Iterator[list[Tensor]]:
    """Each run's MLP activations (``hook_post`` of every block, in order), until exit."""
    captured: list[Tensor] = []
    points = [block.mlp.hook_post for block in graph.model.blocks]
    handles = [p.register_forward_hook(lambda _m, _a, out: captured.append(out)) for p in points]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _first_copy(graph: StreamGraph, captured: list[Tensor], rows: slice) -> list[Tensor]:
    """Each MLP's activations (n, T, d_mlp) in copy 0, which holds a whole MLP's input."""
    size = rows.stop - rows.start
    return [c.detach().view(1, graph.copies, size, *c.shape[1:])[0, 0] for c in captured]


def mlp_groups(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Callable[[Tensor], Tensor],
    tau: int = 16,
    k: int = 50,
    n_groups: Callable[[str], int | None] | int | None = None,
) -> list[NeuronGroup]:
    """Each MLP's core neurons for the metric (the ``tau`` of largest ``|score|``), grouped
    by :class:`~captum_groups.discovery.ConceptClustering` on the core neurons'
    activations at each one's top ``k`` (example, position) pairs; each neuron in the group
    of its largest sub-concept, so the groups of one MLP do not overlap. ``n_groups``: a
    number, a function of the layer's name, or None (chosen by silhouette).

    Examples
    --------
    >>> from captum_groups.circuits import metric_of
    >>> from captum_groups.induction import tiny_gpt, induction_prompts
    >>> clean, corrupted, copyable = induction_prompts(16)
    >>> graph = StreamGraph(tiny_gpt(), clean)
    >>> groups = mlp_groups(graph, clean, graph.reference(corrupted),
    ...                     metric_of("next_token", clean, copyable), tau=8, k=20, n_groups=2)
    >>> sorted({g.layer for g in groups}), sum(len(g) for g in groups)
    (['blocks.0.mlp.hook_post', 'blocks.1.mlp.hook_post'], 16)
    """
    scores, activations = neuron_scores(graph, clean, reference, metric)
    groups = []
    for block, score in scores.items():
        core = score.abs().argsort(descending=True)[: min(tau, len(score))].sort().values
        rows = activations[block].flatten(0, -2)[:, core]  # (N * T, core)
        top = rows.argsort(0, descending=True)[: min(k, len(rows))]  # (k, core)
        described = np.stack([rows[top[:, c]].numpy() for c in range(len(core))])
        layer = f"blocks.{block}.mlp.hook_post"
        asked = n_groups(layer) if callable(n_groups) else n_groups
        count = None if asked is None else min(asked, len(core))
        clustering = ConceptClustering(layer, n_groups=count).fit(described, neurons=core.tolist())
        for number, label in enumerate(np.unique(clustering.labels_)):
            members = core[torch.from_numpy(clustering.labels_ == label)].tolist()
            groups.append(NeuronGroup(layer, members, dim=-1, name=f"m{block}.g{number}"))
    return groups
