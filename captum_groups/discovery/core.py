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
from .._validation.checks import check_positive_int, check_quadrature
from ..groups import GroupSet, Layer, NeuronGroup, layer_name, neuron_means, resolve_layer
from ._integrate.affine_prefix import split_affine_prefix, trace_to_leaves
from ._integrate.channel_head import split_channel_head

Target = int | NeuronGroup

ELEMENTS_PER_PASS = 4_000_000
"""Lower-layer activation elements per integration pass when no row count is given.

Chosen on a 2-core CPU: about 500 rows of resnet50's layer4 at 64x64 pixels
(2048 x 2 x 2) per pass, and whole exemplar sets of small models."""


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


class TargetValues:
    """Evaluates each row's own target on an upper output, from one reduction of it.

    Class targets read one column of an (N, classes) output. Group targets of
    one upper layer are reduced once over all channels (per reduction kind),
    and each row gathers its own target's channels and weights from that, so
    the cost does not grow with the number of targets.

    Examples
    --------
    >>> values = TargetValues([NeuronGroup("l", [1]), NeuronGroup("l", [0, 2], [1.0, 2.0])])
    >>> output = torch.arange(12.0).reshape(2, 3, 2)  # (N, C, positions)
    >>> values(output, torch.tensor([0, 1]))  # row 0: channel 1; row 1: ch 0 + 2 * ch 2
    tensor([ 2.5000, 27.5000])
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.classes = all(isinstance(t, int) for t in self.targets)
        kinds = (
            [] if self.classes else sorted({(t.reduction, t.dim) for t in self.targets}, key=str)
        )
        self.kinds = kinds
        width = max(1 if isinstance(t, int) else len(t) for t in self.targets)
        self._index = torch.zeros(len(self.targets), width, dtype=torch.long)
        self._weight = torch.zeros(len(self.targets), width, dtype=torch.float64)
        self._kind = torch.zeros(len(self.targets), dtype=torch.long)
        for row, target in enumerate(self.targets):
            if isinstance(target, int):
                self._index[row, 0], self._weight[row, 0] = target, 1.0
                continue
            weights = target.weights if target.weights is not None else [1.0] * len(target)
            self._index[row, : len(target)] = torch.tensor(target.indices)
            self._weight[row, : len(target)] = torch.tensor(weights, dtype=torch.float64)
            self._kind[row] = kinds.index((target.reduction, target.dim))

    def reduce(self, output: Tensor) -> Tensor:
        """Every channel of ``output`` reduced as the targets need: (N, kinds * C)."""
        if self.classes:
            if output.ndim != 2:
                raise ValueError(
                    f"class targets need an (N, classes) output, got shape {tuple(output.shape)}"
                )
            if max(self.targets) >= output.shape[1]:
                raise ValueError(
                    f"target class {max(self.targets)} is out of range for "
                    f"{output.shape[1]} outputs"
                )
            return output
        for target in self.targets:
            target.validate_output(output)
        parts = []
        for reduction, dim in self.kinds:
            if (reduction, dim) == ("mean", 1):
                parts.append(neuron_means(output))
                continue
            axis = NeuronGroup("all", [0], dim=dim).channel_axis(output.ndim)
            channels = range(output.shape[axis])
            every = NeuronGroup("all", channels, reduction=reduction, dim=dim)
            parts.append(every.neuron_activations(output))
        return torch.cat(parts, 1)

    @property
    def channelwise(self) -> bool:
        """Whether every target reads channels on axis 1 (so a channel head can serve it)."""
        return self.classes or all(dim == 1 for _, dim in self.kinds)

    def channels(self, owners: Tensor) -> Tensor:
        """The channels each row's target reads, (N, L) (padded with channel 0 at weight 0)."""
        return self._index[owners.to(self._index.device)]

    def gathered(self, values: Tensor, owners: Tensor) -> Tensor:
        """Each row's target value from its own channels only: ``values`` is (N, L, ...),
        row ``i`` holding the channels ``channels(owners)[i]`` (see ``ChannelHead``)."""
        owners = owners.to(self._index.device)
        per_channel = values
        if values.ndim > 2:
            flat = values.flatten(2)
            reduced = [
                self._reduce_positions(values, flat, reduction) for reduction, _ in self.kinds
            ]
            kinds = self._kind[owners].to(values.device)
            per_channel = torch.stack(reduced).gather(
                0, kinds.view(1, -1, 1).expand(1, *values.shape[:2])
            )[0]
        weights = self._weight[owners].to(values.device, values.dtype)
        return (per_channel * weights).sum(1)

    @staticmethod
    def _reduce_positions(values: Tensor, flat: Tensor, reduction: object) -> Tensor:
        if reduction == "mean":
            return flat.mean(2)
        if reduction == "sum":
            return flat.sum(2)
        if reduction == "max":
            return flat.amax(2)
        return values[(slice(None), slice(None), *reduction)]  # type: ignore[misc]

    def __call__(self, output: Tensor, owners: Tensor, reduced: Tensor | None = None) -> Tensor:
        """Value of target ``owners[i]`` on row ``i`` of ``output``: shape (N,)."""
        reduced = self.reduce(output) if reduced is None else reduced
        width = reduced.shape[1] // max(1, len(self.kinds))
        owners = owners.to(self._index.device)
        columns = self._index[owners] + (self._kind[owners] * width)[:, None]
        weights = self._weight[owners].to(reduced.dtype)
        columns, weights = columns.to(reduced.device), weights.to(reduced.device)
        return (reduced.gather(1, columns) * weights).sum(1)


def rows_per_pass(
    activations: Tensor, internal_batch_size: int | None, row_elements: int | None = None
) -> int:
    """Rows (exemplars x steps) per integration pass: given, or from :data:`ELEMENTS_PER_PASS`
    and the elements of a row (by default, of an activation row)."""
    if internal_batch_size is not None:
        check_positive_int(internal_batch_size, "internal_batch_size")
        return internal_batch_size
    per_row = max(1, row_elements or activations[0].numel())
    return max(1, ELEMENTS_PER_PASS // per_row)


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
        :data:`ELEMENTS_PER_PASS` activation elements.
    split_prefix : bool
        Run the affine first part of ``between`` (e.g. a convolution and an
        eval-mode batch norm, up to the first nonlinearity) once per exemplar
        instead of once per step (see :mod:`captum_groups.discovery._integrate.affine_prefix`),
        and compute its last layer only at each row's own target channels
        (see :mod:`captum_groups.discovery._integrate.channel_head`). The same integral, to float
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
        """(T, C) mean |IG| and mean signed IG of each lower neuron per target (float64, on
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
    """Mean |IG| and mean signed IG of each lower neuron per target: two (T, C) tensors.

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


class TopKOverlap:
    """NeurFlow's adaptive tau, accumulated over batches of the pool.

    For each target, the ranked core neurons are masked one more at a time
    (1, 2, ... tau of them) and the target's top-k set among all pool inputs
    is found again; its overlap with the unmasked top-k set falls as more
    neurons are masked. :meth:`sizes` keeps, per target, the fewest neurons
    whose masking brings the overlap below its minimum plus a tolerance.
    Only running top-k lists are kept, so the pool can be streamed.

    Parameters
    ----------
    between : callable
        Lower-layer output -> the upper output the targets read.
    targets : sequence of int or NeuronGroup
        The targets.
    ranked : Tensor
        (T, tau) ranked lower neurons per target.
    k : sequence of int
        Top-set size per target (its number of exemplars).
    """

    def __init__(
        self,
        between: Callable[[Tensor], Tensor],
        targets: Sequence[Target],
        ranked: Tensor,
        k: Sequence[int],
    ) -> None:
        self.between = fold_batchnorm(between) if isinstance(between, fx.GraphModule) else between
        self.values = TargetValues(targets)
        self.ranked, self.k = ranked, list(k)
        self._tops: list[list[tuple[Tensor, Tensor]] | None] = [None] * len(targets)
        self.seen = 0

    def add(self, pool_activations: Tensor) -> None:
        """The next pool inputs' lower-layer activations."""
        ids = torch.arange(self.seen, self.seen + len(pool_activations))
        n_sizes = self.ranked.shape[1] + 1
        per_pass = max(1, rows_per_pass(pool_activations, None) // n_sizes)
        with torch.no_grad():
            for target in range(len(self.values.targets)):
                values = torch.cat(
                    [
                        self._masked_values(target, pool_activations[s : s + per_pass])
                        for s in range(0, len(pool_activations), per_pass)
                    ],
                    1,
                ).cpu()
                self._merge(target, values, ids)
        self.seen += len(pool_activations)

    def _masked_values(self, target: int, activations: Tensor) -> Tensor:
        """(sizes, N) target values with the first 0, 1, ..., tau ranked neurons masked."""
        n_sizes = self.ranked.shape[1] + 1
        mask = torch.ones(n_sizes, activations.shape[1], dtype=activations.dtype)
        for size in range(1, n_sizes):
            mask[size, self.ranked[target, :size]] = 0
        mask = mask.view(n_sizes, 1, -1, *[1] * (activations.ndim - 2)).to(activations.device)
        masked = (activations.unsqueeze(0) * mask).flatten(0, 1)
        owner = torch.full((len(masked),), target, dtype=torch.long)
        return self.values(self.between(masked), owner).view(n_sizes, -1)

    def _merge(self, target: int, values: Tensor, ids: Tensor) -> None:
        k = self.k[target]
        merged = []
        for size, row in enumerate(values):
            candidates, candidate_ids = row, ids
            previous = self._tops[target]
            if previous is not None:
                candidates = torch.cat([previous[size][0], row])
                candidate_ids = torch.cat([previous[size][1], ids])
            top = candidates.topk(min(k, len(candidates))).indices
            merged.append((candidates[top], candidate_ids[top]))
        self._tops[target] = merged

    def sizes(self, tolerance: float) -> list[int]:
        """The adaptive number of core neurons of each target."""
        sizes = []
        for target, tops in enumerate(self._tops):
            k = self.k[target]
            if tops is None or self.seen < k:
                raise ValueError(f"pool has {self.seen} inputs, fewer than the {k} exemplars")
            reference = set(tops[0][1].tolist())
            overlaps = [len(reference & set(ids.tolist())) / k for _, ids in tops[1:]]
            floor = min(overlaps)
            chosen = (s for s, o in enumerate(overlaps, 1) if o < floor + tolerance)
            sizes.append(next(chosen, len(overlaps)))
        return sizes
