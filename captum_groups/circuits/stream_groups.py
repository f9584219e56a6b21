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

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..discovery import ConceptClustering
from ..groups import NeuronGroup
from .stream import INPUT, CorruptedRun, StreamGraph

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
    points = [graph.model.blocks[b].mlp.hook_post for b in blocks]
    start = reference.outputs[INPUT]
    keep = torch.ones(1, len(graph.edges))
    captured: list[Tensor] = []
    handles = [p.register_forward_hook(lambda _m, _a, out: captured.append(out)) for p in points]
    try:
        with torch.no_grad():
            _, clean_outputs, _ = graph.run(clean, keep, reference)
            end = clean_outputs[INPUT][0]
            captured.clear()
            graph.run(clean, keep, reference, input_values=start[None])
            corrupted_post = [c.view(1, graph.copies, len(clean), *c.shape[1:])[0, 0]
                              for c in captured]  # fmt: skip
        gradients = [torch.zeros_like(p) for p in corrupted_post]
        clean_post: list[Tensor] = []
        for step in range(1, n_steps + 1):
            captured.clear()
            values = (start + step / n_steps * (end - start))[None].requires_grad_(True)
            outputs, _, _ = graph.run(clean, keep, reference, input_values=values)
            found = torch.autograd.grad(metric(outputs).sum() / n_steps, captured)
            for block, gradient in enumerate(found):
                split = gradient.view(1, graph.copies, len(clean), *gradient.shape[1:])
                gradients[block] += split[0].sum(0)  # each neuron's gradient, from its copy
            clean_post = [c.detach().view(1, graph.copies, len(clean), *c.shape[1:])[0, 0]
                          for c in captured]  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    scores = {
        b: ((clean_post[b] - corrupted_post[b]) * gradients[b]).flatten(0, -2).sum(0)
        for b in blocks
    }
    return scores, dict(enumerate(clean_post))


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
