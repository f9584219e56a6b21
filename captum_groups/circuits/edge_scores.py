"""Scores of the residual-stream edges of a :class:`~.stream.StreamGraph`.

- :func:`eap_scores`: edge attribution patching (EAP; Syed, Rager and Conmy 2023) and
  its integrated-gradients form (EAP-IG; Hanna, Pezzelle and Belinkov 2024). The score
  of ``u -> v`` is ``(a_u(clean) - a_u(corrupted)) . mean_alpha d metric / d x_v``:
  the gradient at node ``v``'s input averaged over runs between the corrupted and the
  clean one (one step at the clean run is EAP). ``path="activations"`` (the default)
  interpolates each node's output on its own, the rest of the model clean, and reads
  each edge's gradient on its source's own path; ``path="inputs"`` interpolates the
  embedding, as Hanna et al.'s EAP-IG-inputs. It estimates how much the metric drops
  when the edge is patched.
- :func:`exact_scores`: that drop measured, patching one edge at a time (ACDC's
  measurement, Conmy et al. 2023): one run per edge, batched.
- :func:`metric_of`: the metric circuits keep, the target's logit above the mean logit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .._model.captum import approximation_parameters
from .._model.guards import guarded_call
from .._validation.checks import ParameterError, check_method, check_positive_int
from ._ids import EAP_PATHS, NEXT_TOKEN
from .stream import INPUT, CorruptedRun, StreamGraph, chunks

__all__ = [
    "EAP_PATHS",
    "NEXT_TOKEN",
    "eap_scores",
    "exact_scores",
    "metric_ends",
    "metric_of",
    "recovered",
]

Metric = Callable[[Tensor], Tensor]
"""Outputs (K, N, ...) of K runs -> the metric of each run (K,)."""


def metric_of(target: int | str, inputs: Tensor, positions: Tensor | None = None) -> Metric:
    """The metric a circuit keeps: the target's logit above the mean logit, averaged over
    the examples (and the chosen positions).

    Parameters
    ----------
    target : int or "next_token"
        A class (output index), or ``"next_token"``: each position's next input token.
    inputs : Tensor
        The clean inputs (token ids for ``"next_token"``).
    positions : Tensor, optional
        Boolean (N, T): where a model with outputs per position is read; by default
        every position but the last for ``"next_token"``; for a class, the positions
        whose next input token is that class (token ids), else the last one.

    Examples
    --------
    >>> metric = metric_of(1, torch.zeros(2, 3))
    >>> metric(torch.tensor([[[0.0, 3.0], [1.0, 1.0]]]))  # one run, two examples
    tensor([0.7500])
    """
    if target == NEXT_TOKEN:
        if inputs.is_floating_point() or inputs.ndim != 2:
            raise ParameterError("target", "target 'next_token' reads token ids (N, T) as inputs")
        chosen = _positions(positions, inputs.shape, last=False)
        following = inputs[:, 1:]

        def next_token(outputs: Tensor) -> Tensor:
            _check_per_position(outputs, inputs)
            logits = outputs[:, :, :-1]
            ahead = following.to(outputs.device).expand(len(logits), -1, -1)[..., None]
            right = logits.gather(-1, ahead)[..., 0]
            where = chosen[:, :-1].to(outputs.device)
            return ((right - logits.mean(-1)) * where).sum((1, 2)) / where.sum()

        return next_token
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ParameterError("target", f"target must be a class index >= 0 or 'next_token', "
                                       f"got {target!r}")  # fmt: skip

    def class_logit(outputs: Tensor) -> Tensor:
        if target >= outputs.shape[-1]:
            raise ParameterError(
                "target", f"target {target} is out of range for {outputs.shape[-1]} outputs"
            )
        above = outputs[..., target] - outputs.mean(-1)
        if above.ndim == 2:
            return above.mean(1)
        if positions is None and not inputs.is_floating_point() and inputs.ndim == 2:
            # a language model's class is a next token: read where the input's next one is it
            following = torch.zeros(inputs.shape, dtype=torch.bool, device=inputs.device)
            following[:, :-1] = inputs[:, 1:] == target
            if not following.any():
                raise ParameterError(
                    "target", f"no position of the inputs is followed by token {target}"
                )
            chosen = following.float()
        else:
            chosen = _positions(positions, above.shape[1:], last=True)
        chosen = chosen.to(outputs.device)
        return (above * chosen).sum((1, 2)) / chosen.sum()

    return class_logit


def _positions(positions: Tensor | None, shape: tuple[int, ...], last: bool) -> Tensor:
    if positions is None:
        chosen = torch.zeros(shape, dtype=torch.bool)
        if last:
            chosen[:, -1] = True
        else:
            chosen[:, :-1] = True
        return chosen.float()
    if positions.dtype != torch.bool or tuple(positions.shape) != tuple(shape):
        raise ParameterError(
            "positions",
            f"positions must be boolean {tuple(shape)}, got {positions.dtype} "
            f"{tuple(positions.shape)}",  # fmt: skip
        )
    if not positions.any():
        raise ParameterError("positions", "positions selects no position")
    return positions.float()


def _check_per_position(outputs: Tensor, inputs: Tensor) -> None:
    if outputs.ndim != 4 or outputs.shape[2] != inputs.shape[1]:
        raise ParameterError(
            "target",
            f"target 'next_token' needs logits per position (N, T, vocabulary), got "
            f"outputs {tuple(outputs.shape[1:])}",  # fmt: skip
        )


def eap_scores(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Metric,
    n_steps: int = 5,
    method: str = "riemann_right",
    steps_per_pass: int = 8,
    path: str = "activations",
) -> Tensor:
    """EAP-IG scores of every edge of ``graph``, in ``graph.edges`` order (EAP with
    ``n_steps=1``: one step, at the clean run, whatever ``method`` and ``path``).

    Parameters
    ----------
    graph, clean, reference, metric
        The graph, its clean inputs, the corrupted run and the metric (:func:`metric_of`).
    n_steps, method
        The integration: steps and Captum's approximation method.
    steps_per_pass : int
        Integration runs per forward and backward pass (memory).
    path : {"activations", "inputs"}
        ``"activations"``: each node's output goes from its corrupted value to its clean
        one while the rest of the model runs clean (``n_steps`` runs per node), and the
        edges out of a node read the gradients of that node's own runs. The scores of a
        node's edges then sum to the metric's drop when the node is patched (the
        completeness of integrated gradients), and each estimates a patch made from the
        clean run, as :func:`exact_scores` measures. ``"inputs"``: the embedding goes
        from corrupted to clean and every node follows (``n_steps`` runs in all; Hanna
        et al.'s EAP-IG-inputs); cheaper, and what the embedding's edges sum to is the
        whole clean - corrupted difference.

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt, induction_data
    >>> clean, corrupted = induction_data(4, 0)[0], induction_data(4, 1)[0]
    >>> graph = StreamGraph(tiny_gpt(), clean)
    >>> metric = metric_of("next_token", clean)
    >>> eap_scores(graph, clean, graph.reference(corrupted), metric).shape
    torch.Size([110])
    """
    check_positive_int(n_steps, "n_steps")
    check_method(method)
    check_positive_int(steps_per_pass, "steps_per_pass")
    if path not in EAP_PATHS:
        raise ParameterError("path", f"path must be one of {list(EAP_PATHS)}, got {path!r}")
    with guarded_call(graph.model, "eap_scores", needs_grad=True):
        runs = _runs(graph, n_steps, method, path)
        return _eap(graph, clean, reference, metric, runs, steps_per_pass)


class _Runs(NamedTuple):
    """The integration runs of :func:`eap_scores`: the edges each keeps (K, edges), where
    each one's embedding lies between the corrupted (0) and the clean one (1) (K,), each
    run's weight (K,), and which runs' gradients each edge reads (K, edges)."""

    keep: Tensor
    embedding: Tensor
    weights: Tensor
    reads: Tensor


def _runs(graph: StreamGraph, n_steps: int, method: str, path: str) -> _Runs:
    count = len(graph.edges)
    if n_steps == 1:  # EAP: the gradient at the clean run
        weights, points = [1.0], [1.0]
    else:
        step_sizes, alphas = approximation_parameters(method)
        weights, points = step_sizes(n_steps), alphas(n_steps)
    if path == "inputs" or n_steps == 1:
        keep = torch.ones(len(points), count)
        return _Runs(keep, torch.tensor(points), torch.tensor(weights), torch.ones_like(keep))
    sources = list(dict.fromkeys(u for u, _ in graph.edges))
    out_of = torch.tensor([[u == source for u, _ in graph.edges] for source in sources])
    alpha = torch.tensor(points)
    # run (source, step): the source's edges blend its corrupted and clean outputs
    reads = out_of.float().repeat_interleave(len(alpha), 0)
    keep = torch.where(reads.bool(), alpha.repeat(len(sources))[:, None], 1.0)
    # the clean embedding, as a leaf the gradients flow from
    return _Runs(keep, torch.ones(len(keep)), torch.tensor(weights).repeat(len(sources)), reads)


def _eap(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Metric,
    runs: _Runs,
    runs_per_pass: int,
) -> Tensor:
    everything = torch.ones(1, len(graph.edges))
    _, clean_outputs = graph.run_all(clean, everything, reference)
    assert reference.outputs is not None
    start, end = reference.outputs[INPUT], clean_outputs[INPUT][0]
    scores = torch.zeros(len(graph.edges), dtype=torch.float64)
    for part in chunks(len(runs.keep), runs_per_pass):
        alpha = runs.embedding[part].to(start.dtype).to(start.device)
        # lerp gives the clean embedding itself at alpha = 1
        values = torch.lerp(start, end, alpha.view((-1,) + (1,) * start.ndim))
        keep = runs.keep[part]
        # the metric reads every example (a mean over them)
        joined = graph.held_outputs(clean, keep, reference, values)
        weight = runs.weights[part].to(start.dtype).to(start.device)
        for rows in chunks(len(clean), graph.examples_per_pass):
            scores += _chunk_scores(
                graph, clean, reference, metric, clean_outputs, rows,
                values[:, rows], keep, joined, weight, runs.reads[part],
            )  # fmt: skip
    return scores.float()


def _chunk_scores(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Metric,
    clean_outputs: dict[str, Tensor],
    rows: slice,
    values: Tensor,
    keep: Tensor,
    joined: Callable[[slice, Tensor], Tensor],
    weight: Tensor,
    reads: Tensor,
) -> Tensor:
    """One chunk of examples' share of every edge's score, for some integration runs."""
    assert reference.outputs is not None
    part = reference.rows(rows)
    outputs, _, inputs = graph.run(clean[rows], keep, part, values.clone().requires_grad_(True))
    receivers = list(inputs)
    value = (metric(joined(rows, outputs)) * weight).sum()
    found = torch.autograd.grad(value, [inputs[r] for r in receivers])
    gradients = dict(zip(receivers, found, strict=True))
    assert part.outputs is not None
    reads = reads.to(outputs.device, torch.float64)
    return torch.stack([
        (reads[:, e] * ((clean_outputs[u][0][rows] - part.outputs[u]) * gradients[v])
         .flatten(1).sum(1).double()).sum()
        for e, (u, v) in enumerate(graph.edges)
    ]).cpu()  # fmt: skip


def metric_ends(
    graph: StreamGraph, clean: Tensor, reference: CorruptedRun, metric: Metric
) -> tuple[float, float]:
    """The metric with every edge kept (the clean model) and with none (the corrupted one).

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt, induction_prompts
    >>> clean, corrupted, copyable = induction_prompts(8)
    >>> graph = StreamGraph(tiny_gpt(), clean)
    >>> high, low = metric_ends(graph, clean, graph.reference(corrupted),
    ...                         metric_of("next_token", clean, copyable))
    >>> high > low
    True
    """
    ends = torch.stack([torch.ones(len(graph.edges)), torch.zeros(len(graph.edges))])
    high, low = metric(graph.run_all(clean, ends, reference)[0]).tolist()
    return high, low


def recovered(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Metric,
    keep: Tensor,
    masks_per_pass: int = 16,
) -> Tensor:
    """The metric of runs that keep the edges each row of ``keep`` marks (the others
    patched), as the fraction of the clean - corrupted difference it keeps."""
    clean_value, corrupted_value = metric_ends(graph, clean, reference, metric)
    with torch.no_grad():
        values = torch.cat(
            [metric(graph.run_all(clean, keep[part], reference)[0])
             for part in chunks(len(keep), masks_per_pass)]
        )  # fmt: skip
    if abs(clean_value - corrupted_value) < 1e-12:
        raise ParameterError(
            "corrupted",
            "the corrupted input leaves the metric as the clean input gives it; "
            "there is no difference for a circuit to recover",  # fmt: skip
        )
    return (values - corrupted_value) / (clean_value - corrupted_value)


def exact_scores(
    graph: StreamGraph,
    clean: Tensor,
    reference: CorruptedRun,
    metric: Metric,
    masks_per_pass: int = 16,
) -> Tensor:
    """How much the metric drops when each edge alone is patched (``graph.edges`` order).

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt, induction_data
    >>> clean, corrupted = induction_data(4, 0)[0], induction_data(4, 1)[0]
    >>> graph = StreamGraph(tiny_gpt(), clean)
    >>> exact_scores(graph, clean, graph.reference(corrupted), metric_of("next_token", clean)).shape
    torch.Size([110])
    """
    count = len(graph.edges)
    keep = torch.ones(count + 1, count)
    keep[torch.arange(count), torch.arange(count)] = 0
    with guarded_call(graph.model, "exact_scores"), torch.no_grad():
        values = torch.cat(
            [metric(graph.run_all(clean, keep[part], reference)[0])
             for part in chunks(count + 1, masks_per_pass)]
        )  # fmt: skip
    return values[-1] - values[:-1]
