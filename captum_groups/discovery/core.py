"""NeurFlow's core neurons: the lower neurons that matter most to an upper node.

For a target (a class logit, or a neuron or group of an upper layer) and its
top-k exemplars, integrated gradients run from the target to the lower
layer's activations (zero baseline, as in NeurFlow; Cao et al., ICLR 2025).
Attributions are averaged over space, and each lower neuron is scored by the
mean absolute attribution over the exemplars. The top ``tau`` are the
target's core neurons.

:class:`CoreScores` does the integration for many targets at once, on the
part of the network between the two layers only. An exemplar shared by
several targets runs its integration path forward once; each target then
gets its own backward pass over that shared graph (one backward per target
*slot*, each row evaluating only its own target). Exemplars are sorted by how
many targets share them, so the slots of one pass are nearly all used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from .._model.captum import approximation_parameters
from .._model.capture import layer_outputs
from .._model.guards import guarded_call
from .._model.subnetwork import fold_batchnorm
from .._model.subnetwork import subnetwork as extract_subnetwork
from .._validation.checks import check_quadrature
from ..groups import GroupSet, Layer, NeuronGroup, layer_name, neuron_means, resolve_layer
from ._integrate.affine_prefix import split_affine_prefix, trace_to_leaves
from ._integrate.channel_head import split_channel_head
from .overlap import TopKOverlap
from .targets import Target, TargetValues, rows_per_pass


@dataclass(frozen=True)
class CoreNeurons:
    """Core neurons of a lower layer for some targets.

    Attributes
    ----------
    targets : tuple
        The targets (class indices or NeuronGroups), in order.
    scores : Tensor
        (T, C) mean ``|integrated gradients|`` of each lower neuron per target.
    signed_scores : Tensor
        (T, C) mean signed integrated gradients (the neuron-level edge weights).
    indices : tuple of tuple of int
        Each target's core neurons, most important first.
    layer : str
        Dotted name of the lower layer.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> core = find_core_neurons(model, "relu3", [0, 1], [x[y == 0][:20], x[y == 1][:20]], tau=5)
    >>> core.layer, core.targets, [len(i) for i in core.indices]
    ('relu3', (0, 1), [5, 5])
    >>> [len(g) for g in core.groups()]
    [5, 5]
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


class CoreScores:
    """NeurFlow's neuron scores for many targets, accumulated over batches of exemplars.

    Parameters
    ----------
    between : callable
        Maps the lower layer's output to the upper output the targets read
        (a layer's output, or the model's for class targets).
    targets : sequence of int or NeuronGroup
        The targets.
    n_steps : int
        Integration steps.
    method : str
        Captum's approximation method (``"gausslegendre"``, ``"riemann_trapezoid"``...).
    internal_batch_size : int, optional
        Rows (exemplars x steps) per forward/backward pass; by default about
        ``ELEMENTS_PER_PASS`` activation elements.
    split_prefix : bool
        Run the affine first part of ``between`` (e.g. a convolution and an
        eval-mode batch norm, up to the first nonlinearity) once per exemplar
        instead of once per step (see ``affine_prefix``),
        and compute its last layer only at each row's own target channels
        (see ``channel_head``). The same integral, to float
        rounding; ``False`` integrates through ``between`` as it is.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 2))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.0, 1.0, 3.0]]))
    >>> scorer = CoreScores(net, [0, 1], n_steps=4)
    >>> scorer.add(torch.ones(2, 3), [[0, 1], [1]])  # the 1st exemplar serves both targets
    >>> mean_abs, signed = scorer.result()
    >>> signed  # a linear map: IG from zero is weight * activation
    tensor([[ 1., -2.,  0.],
            [ 0.,  1.,  3.]], dtype=torch.float64)
    """

    def __init__(
        self,
        between: Callable[[Tensor], Tensor],
        targets: Sequence[Target],
        n_steps: int = 24,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        split_prefix: bool = True,
    ) -> None:
        check_quadrature(n_steps, method)
        if not targets:
            raise ValueError("targets is empty")
        self.between = fold_batchnorm(between) if isinstance(between, fx.GraphModule) else between
        self.values = TargetValues(targets)
        self.split = split_affine_prefix(self.between) if split_prefix else None
        rest = self.split.rest if self.split else trace_to_leaves(self.between)
        shortcut = split_prefix and rest is not None and self.values.channelwise
        self.head = split_channel_head(rest) if shortcut else None
        self.n_targets = len(targets)
        step_sizes, alphas = approximation_parameters(method)
        self.step_sizes, self.alphas = step_sizes(n_steps), alphas(n_steps)
        self.internal_batch_size = internal_batch_size
        self._abs: Tensor | None = None
        self._signed: Tensor | None = None
        self._count = torch.zeros(len(targets), dtype=torch.long)

    def add(self, activations: Tensor, owners: Sequence[Sequence[int]]) -> None:
        """Integrate a batch of exemplars; ``owners[i]`` lists the targets of exemplar ``i``."""
        if len(owners) != len(activations):
            raise ValueError(f"owners must list the targets of each of the {len(activations)} rows")
        # Crops shared by most targets first: a pass runs one backward per *slot* (the
        # i-th target of each crop), so crops with equally many targets fill every slot.
        order = sorted(range(len(owners)), key=lambda i: -len(owners[i]))
        order = [i for i in order if owners[i]]
        if not order:
            return
        per_pass = rows_per_pass(
            activations, self.internal_batch_size, self._row_elements(activations)
        )
        # A pass holds per_pass rows of crops x steps; a crop's steps stay in one pass
        # when they fit, so its frontier is computed once.
        crops_per_pass = max(1, per_pass // len(self.alphas))
        for start in range(0, len(order), crops_per_pass):
            rows = order[start : start + crops_per_pass]
            chunk = activations[rows].detach()
            self._integrate(chunk, [list(owners[i]) for i in rows], per_pass)

    def _row_elements(self, activations: Tensor) -> int:
        """Elements of one path row: an activation row, or the prefix's frontier if larger."""
        if self.split is None:
            return activations[0].numel()
        with torch.no_grad():
            ends = self.split.prefix(torch.zeros_like(activations[:1]))
        return max(activations[0].numel(), sum(end[0].numel() for end in ends))

    def _integrate(self, chunk: Tensor, owners: list[list[int]], per_pass: int) -> None:
        """Integrated gradients of each exemplar of ``chunk`` for each of its targets."""
        n_crops, n_slots = len(chunk), len(owners[0])
        # slot_targets[s, c]: crop c's s-th target (-1 when it has fewer). One backward
        # per slot gives every row the gradient of its own target only: the rows of one
        # slot are independent, so summing their values before the backward is exact.
        slot_targets = torch.full((n_slots, n_crops), -1, dtype=torch.long)
        for crop, targets in enumerate(owners):
            slot_targets[: len(targets), crop] = torch.tensor(targets)
        # The affine prefix P (convolutions, folded batch norm, the identity branch) runs
        # once per crop: P(a x) = P(0) + a (P(x) - P(0)), so the straight path from 0 to x
        # maps to the straight path from P(0) to P(x), and the integration walks that one.
        inputs = chunk.detach().requires_grad_(self.split is not None)
        with torch.enable_grad():
            ends = self.split.prefix(inputs) if self.split else (inputs,)
        with torch.no_grad():
            zero = torch.zeros_like(chunk[:1])
            base = self.split.prefix(zero) if self.split else (zero,)
        spans = [end.detach() - start for end, start in zip(ends, base, strict=True)]
        totals = [end.new_zeros(n_slots, *end.shape) for end in ends]
        steps_per_pass = max(1, per_pass // n_crops)
        alphas_all = torch.tensor(self.alphas, dtype=chunk.dtype, device=chunk.device)
        sizes_all = torch.tensor(self.step_sizes, dtype=chunk.dtype, device=chunk.device)
        for first in range(0, len(self.alphas), steps_per_pass):
            alphas = alphas_all[first : first + steps_per_pass]
            # the path points of every crop, step-major, as Captum lays them out
            path = [
                (start + alphas.view(-1, *[1] * span.ndim) * span).flatten(0, 1).requires_grad_()
                for start, span in zip(base, spans, strict=True)
            ]
            # each row's gradient comes out scaled by its step size (Captum's rule)
            row_sizes = sizes_all[first : first + len(alphas)].repeat_interleave(n_crops)
            with torch.enable_grad():
                # copies, so that an in-place first operation (ReLU(inplace=True)) is allowed
                points = [point.clone() for point in path]
                # the shared forward pass: up to the head, or to the output
                if self.head:
                    boundary = self.head.body(*points)
                else:
                    output = self.split.rest(*points)[0] if self.split else self.between(*points)
                    reduced = self.values.reduce(output)
                for slot in range(n_slots):
                    owner = slot_targets[slot].repeat(len(alphas))
                    value = self._slot_values(boundary if self.head else (output, reduced), owner)
                    weight = row_sizes * (owner >= 0).to(row_sizes.device, row_sizes.dtype)
                    grads = torch.autograd.grad(
                        (value * weight).sum(),
                        path,
                        retain_graph=slot < n_slots - 1,
                        allow_unused=True,
                    )
                    for total, grad in zip(totals, grads, strict=True):
                        if grad is not None:
                            total[slot] += grad.view(len(alphas), *total.shape[1:]).sum(0)
        for slot in range(n_slots):
            if self.split:
                # P's Jacobian is the same at every step, so the step-weighted sum of the
                # frontier gradients goes back through P once (the chain rule, summed).
                (gradient,) = torch.autograd.grad(
                    ends, inputs, [t[slot] for t in totals], retain_graph=slot < n_slots - 1
                )
            else:
                gradient = totals[0][slot]
            # IG from the zero baseline: (x - 0) times the path-averaged gradient, then each
            # neuron's spatial mean (NeurFlow averages attributions over space)
            per_neuron = neuron_means(gradient * chunk)
            valid = (slot_targets[slot] >= 0).nonzero()[:, 0]
            rows = per_neuron.index_select(0, valid.to(per_neuron.device))
            self._accumulate(slot_targets[slot][valid], rows)

    def _slot_values(self, shared: tuple[Tensor, ...], owner: Tensor) -> Tensor:
        """Each row's value of its target (``owner``, -1 for none): from the shared head
        inputs at the target's own channels, or from the shared output."""
        known = owner.clamp_min(0)
        if self.head is None:
            output, reduced = shared
            return self.values(output, known, reduced)
        channels = self.values.channels(known).to(shared[0].device)
        return self.values.gathered(self.head(shared, channels), known)

    def _accumulate(self, targets: Tensor, per_neuron: Tensor) -> None:
        values = per_neuron.detach().double()
        if self._abs is None or self._signed is None:
            self._abs = values.new_zeros(self.n_targets, values.shape[1])
            self._signed = torch.zeros_like(self._abs)
        self._abs.index_add_(0, targets.to(values.device), values.abs())
        self._signed.index_add_(0, targets.to(values.device), values)
        self._count += torch.bincount(targets, minlength=self.n_targets)

    def result(self) -> tuple[Tensor, Tensor]:
        """(T, C) mean ``|IG|`` and mean signed IG of each lower neuron per target (float64, on
        the activations' device)."""
        empty = (self._count == 0).nonzero()
        if self._abs is None or self._signed is None or len(empty):
            first = int(empty[0]) if len(empty) else 0
            raise ValueError(f"target {self.values.targets[first]!r} got no exemplars")
        count = self._count[:, None].double().to(self._abs.device)
        return self._abs / count, self._signed / count


def core_scores(
    between: Callable[[Tensor], Tensor],
    targets: Sequence[Target],
    activations: Tensor,
    owners: Tensor | Sequence[Sequence[int]],
    n_steps: int = 24,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean ``|IG|`` and mean signed IG of each lower neuron per target: two (T, C) tensors.

    ``activations`` are the lower layer's activations on the exemplars;
    ``owners`` gives each row's target (a tensor) or targets (lists).
    """
    scorer = CoreScores(between, targets, n_steps, method, internal_batch_size)
    rows = [[int(t)] for t in owners] if isinstance(owners, Tensor) else owners
    scorer.add(activations, rows)
    return scorer.result()


def _targets(
    target: Target | Sequence[Target], model: nn.Module, lower: nn.Module
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
    if upper is lower:
        raise ValueError(
            "target groups belong to lower_layer itself; they must belong to a layer after it"
        )
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
    if any(b.is_floating_point() and not torch.isfinite(b).all() for b in batches):
        raise ValueError("exemplars contains NaN or infinite values")
    return batches


def find_core_neurons(
    model: nn.Module,
    lower_layer: Layer,
    target: Target | Sequence[Target],
    exemplars: Tensor | Sequence[Tensor],
    tau: int = 16,
    n_steps: int = 24,
    adaptive: bool = False,
    pool: Tensor | None = None,
    tolerance: float = 0.05,
    batch_size: int = 256,
    subnetwork: Callable[[Tensor], Tensor] | None = None,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
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
        Integration steps (24, as ``build_circuit``'s default; NeurFlow: 50).
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
    method : str
        Captum's integral approximation (NeurFlow: ``"gausslegendre"``).
    internal_batch_size : int, optional
        Rows (exemplars x steps) per integration pass.

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
    targets, upper = _targets(target, model, lower)
    batches = _exemplar_list(exemplars, len(targets))
    check_quadrature(n_steps, method)
    if adaptive and pool is None:
        raise ValueError("adaptive=True needs pool: the inputs to re-rank the target's top-k among")
    with guarded_call(model, "find_core_neurons", needs_grad=True):
        activations = layer_outputs(model, torch.cat(batches), lower, batch_size)
        n_neurons = activations.shape[1]
        if isinstance(tau, bool) or not isinstance(tau, int) or not 1 <= tau <= n_neurons:
            raise ValueError(
                f"tau must be an int between 1 and the lower layer's {n_neurons} neurons, got {tau}"
            )
        between = subnetwork if subnetwork is not None else extract_subnetwork(model, lower, upper)
        owners = torch.cat(
            [torch.full((len(b),), t, dtype=torch.long) for t, b in enumerate(batches)]
        )
        scores, signed = core_scores(
            between, targets, activations, owners, n_steps, method, internal_batch_size
        )
        ranked = scores.cpu().argsort(dim=1, descending=True, stable=True)[:, :tau]
        if adaptive:
            assert pool is not None
            overlap = TopKOverlap(between, targets, ranked, [len(b) for b in batches])
            overlap.add(layer_outputs(model, pool, lower, batch_size))
            sizes = overlap.sizes(tolerance)
            ranked_lists = [ranked[t, :size].tolist() for t, size in enumerate(sizes)]
        else:
            ranked_lists = ranked.tolist()
        return CoreNeurons(
            tuple(targets),
            scores.to(activations.dtype).cpu(),
            signed.to(activations.dtype).cpu(),
            tuple(tuple(r) for r in ranked_lists),
            layer_name(model, lower),
        )
