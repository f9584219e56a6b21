"""NeurFlow's core neurons: the lower neurons that matter most to an upper node.

For a target (a class logit, or a neuron or group of an upper layer) and its
top-k exemplars, integrated gradients run from the target to the lower
layer's activations (zero baseline, as in NeurFlow; Cao et al., ICLR 2025).
Attributions are averaged over space, and each lower neuron is scored by the
mean absolute attribution over the exemplars. The top ``tau`` are the
target's core neurons. All targets of one upper layer run in one batched
integrated-gradients call on the part of the network above the lower layer:
each exemplar row is scored by its own target only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients
from torch import Tensor, nn

from .._hooks import layer_outputs, preserve_buffers
from .._subnetwork import subnetwork as extract_subnetwork
from ..groups import GroupSet, Layer, NeuronGroup, layer_name, resolve_layer

Target = int | NeuronGroup


@dataclass(frozen=True)
class CoreNeurons:
    """Core neurons of a lower layer for some targets.

    Attributes
    ----------
    targets : tuple
        The targets (class indices or NeuronGroups), in order.
    scores : Tensor
        (T, C) mean |integrated gradients| of each lower neuron per target.
    signed_scores : Tensor
        (T, C) mean signed integrated gradients (the neuron-level edge weights).
    indices : tuple of tuple of int
        Each target's core neurons, most important first.
    layer : str
        Dotted name of the lower layer.
    """

    targets: tuple[Target, ...]
    scores: Tensor
    signed_scores: Tensor
    indices: tuple[tuple[int, ...], ...]
    layer: str

    @property
    def union(self) -> tuple[int, ...]:
        """The critical set of the lower layer: every target's core neurons, sorted."""
        return tuple(sorted({i for core in self.indices for i in core}))

    def groups(self) -> GroupSet:
        """One group per target, holding its core neurons."""
        return GroupSet(
            NeuronGroup(self.layer, core, name=f"core{t}") for t, core in enumerate(self.indices)
        )


def _targets(
    target: Target | Sequence[Target], model: nn.Module
) -> tuple[list[Target], nn.Module | None]:
    items = list(target) if isinstance(target, (list, tuple, GroupSet)) else [target]
    if not items:
        raise ValueError("target is empty; give a class index, a NeuronGroup, or a list of them")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return items, None
    if not all(isinstance(t, NeuronGroup) for t in items):
        raise TypeError(
            "target must be class indices or NeuronGroups of one upper layer, not a mix"
        )
    upper = items[0].resolve(model)
    if any(t.resolve(model) is not upper for t in items):
        raise ValueError("all target groups must belong to one upper layer")
    return items, upper


def _exemplar_list(exemplars: Tensor | Sequence[Tensor], n_targets: int) -> list[Tensor]:
    if isinstance(exemplars, Tensor):
        batches = [exemplars] if n_targets == 1 else list(exemplars)
    else:
        batches = list(exemplars)
    if len(batches) != n_targets:
        raise ValueError(
            f"exemplars must give one batch per target ({n_targets}), got {len(batches)}"
        )
    if any(len(b) == 0 for b in batches):
        raise ValueError("exemplars holds an empty batch; every target needs exemplars")
    return batches


def _value_function(
    between: Callable[[Tensor], Tensor], targets: list[Target], owners: Tensor
) -> Callable[[Tensor], Tensor]:
    """a -> per-row value of the row's own target (rows come repeated per IG step)."""

    def value(activations: Tensor) -> Tensor:
        output = between(activations)
        row_owner = owners.repeat(activations.shape[0] // len(owners))
        if isinstance(targets[0], NeuronGroup):
            per_target = torch.stack([t(output) for t in targets], 1)
            return per_target.gather(1, row_owner[:, None])[:, 0]
        classes = torch.tensor(targets, device=output.device)[row_owner]
        return output.gather(1, classes[:, None])[:, 0]

    return value


def find_core_neurons(
    model: nn.Module,
    lower_layer: Layer,
    target: Target | Sequence[Target],
    exemplars: Tensor | Sequence[Tensor],
    tau: int = 16,
    n_steps: int = 50,
    adaptive: bool = False,
    pool: Tensor | None = None,
    tolerance: float = 0.05,
    batch_size: int = 256,
    subnetwork: Callable[[Tensor], Tensor] | None = None,
) -> CoreNeurons:
    """The core neurons of a lower layer for one or more targets (NeurFlow).

    Parameters
    ----------
    model : nn.Module
        The model.
    lower_layer : nn.Module or str
        The layer whose neurons are ranked.
    target : int, NeuronGroup, or list of them
        Class logits (ints), or neurons/groups of one upper layer. A list is
        computed in one batched pass.
    exemplars : Tensor, or list of Tensor
        Each target's exemplar inputs (e.g. its top-k crops): a tensor for one
        target, a list (or a stacked tensor) with one batch per target.
    tau : int
        Core neurons per target (NeurFlow: 16); the most in adaptive mode.
    n_steps : int
        Integration steps (NeurFlow: 50).
    adaptive : bool
        NeurFlow's optimal tau: mask the ranked neurons one by one and keep
        the fewest whose masking changes the target's top-k set (k = number
        of exemplars) about as much as masking all ``tau`` does.
    pool : Tensor, optional
        Inputs among which the top-k set is re-ranked in adaptive mode.
    tolerance : float
        Adaptive mode keeps the fewest neurons whose masking brings the top-k
        overlap below its minimum plus this (NeurFlow's acceptable error range).
    batch_size : int
        Inputs per forward pass when computing lower activations.
    subnetwork : callable, optional
        Maps the lower layer's output to the upper layer's output (or the
        model's output for class targets); extracted with torch.fx by default.

    Returns
    -------
    CoreNeurons

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> core = find_core_neurons(model, "relu3", [0, 1], [x[y == 0][:20], x[y == 1][:20]], tau=5)
    >>> len(core.indices), len(core.indices[0]), core.scores.shape
    (2, 5, torch.Size([2, 64]))
    """
    lower = resolve_layer(model, lower_layer, "lower_layer")
    targets, upper = _targets(target, model)
    batches = _exemplar_list(exemplars, len(targets))
    if adaptive and pool is None:
        raise ValueError("adaptive=True needs pool: the inputs to re-rank the target's top-k among")
    activations = layer_outputs(model, torch.cat(batches), lower, batch_size)
    n_neurons = activations.shape[1]
    if isinstance(tau, bool) or not isinstance(tau, int) or not 1 <= tau <= n_neurons:
        raise ValueError(
            f"tau must be an int between 1 and the lower layer's {n_neurons} neurons, got {tau}"
        )
    between = subnetwork if subnetwork is not None else extract_subnetwork(model, lower, upper)
    owners = torch.cat([torch.full((len(b),), t, dtype=torch.long) for t, b in enumerate(batches)])
    with preserve_buffers(model):
        scores, signed = core_scores(between, targets, activations, owners, n_steps)
    ranked = scores.argsort(dim=1, descending=True, stable=True)[:, :tau]
    if adaptive:
        pool_acts = layer_outputs(model, pool, lower, batch_size)
        sizes = [
            optimal_tau(between, targets[t], pool_acts, ranked[t], len(batches[t]), tolerance)
            for t in range(len(targets))
        ]
        ranked_lists = [ranked[t, :size].tolist() for t, size in enumerate(sizes)]
    else:
        ranked_lists = ranked.tolist()
    return CoreNeurons(
        tuple(targets),
        scores.cpu(),
        signed.cpu(),
        tuple(tuple(r) for r in ranked_lists),
        layer_name(model, lower),
    )


def core_scores(
    between: Callable[[Tensor], Tensor],
    targets: Sequence[Target],
    activations: Tensor,
    owners: Tensor,
    n_steps: int = 50,
    rows_per_pass: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Mean |IG| and mean signed IG of each lower neuron, per target: two (T, C) tensors.

    ``activations`` are the lower layer's activations on every target's
    exemplars, stacked; ``owners`` says which target each row belongs to.
    Batched integrated-gradients calls (zero baseline) serve all targets;
    at most ``rows_per_pass`` rows (exemplars x steps) go through the
    network at once, which bounds memory.
    """
    owners = owners.to(activations.device)
    examples_per_call = max(1, rows_per_pass // n_steps)
    parts = []
    for start in range(0, len(activations), examples_per_call):
        rows = slice(start, start + examples_per_call)
        ig = IntegratedGradients(_value_function(between, list(targets), owners[rows]))
        chunk = activations[rows].detach()
        attributions = ig.attribute(
            chunk, n_steps=n_steps, internal_batch_size=max(len(chunk), rows_per_pass)
        )
        per_neuron = attributions.flatten(2).mean(2) if attributions.ndim > 2 else attributions
        parts.append(per_neuron.detach())
    per_neuron = torch.cat(parts)
    rows_of = [owners == t for t in range(len(targets))]
    scores = torch.stack([per_neuron[r].abs().mean(0) for r in rows_of])
    signed = torch.stack([per_neuron[r].mean(0) for r in rows_of])
    return scores, signed


def optimal_tau(
    between: Callable[[Tensor], Tensor],
    target: Target,
    pool_acts: Tensor,
    ranked: Tensor,
    k: int,
    tolerance: float,
) -> int:
    """NeurFlow's optimal tau: the fewest ranked neurons whose masking brings the overlap of
    the target's top-k set (within ``pool_acts``) below its minimum plus ``tolerance``."""
    if k > len(pool_acts):
        raise ValueError(f"pool has {len(pool_acts)} inputs, fewer than the {k} exemplars")

    def top_set(acts: Tensor) -> set[int]:
        with torch.no_grad():
            output = between(acts)
            values = target(output) if isinstance(target, NeuronGroup) else output[:, target]
        return set(values.topk(k).indices.tolist())

    reference = top_set(pool_acts)
    overlaps = []
    for size in range(1, len(ranked) + 1):
        masked = pool_acts.clone()
        masked[:, ranked[:size]] = 0
        overlaps.append(len(reference & top_set(masked)) / k)
    floor = min(overlaps)
    sizes = (size for size, overlap in enumerate(overlaps, 1) if overlap < floor + tolerance)
    return next(sizes, len(ranked))
