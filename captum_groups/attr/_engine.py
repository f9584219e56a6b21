"""Shared machinery: many groups from one forward pass.

Captum's neuron methods run the whole model once per neuron selector. Here the
model runs once, up to the layer, for a whole chunk of groups; the gradients of
all groups come from one batched (vmapped) backward pass. Captum's own
algorithm (integrated gradients, GradientShap, DeepLift, ...) is then run once
per group with :class:`_Replay` standing in for its ``gradient_func`` or
``forward_func``: the first run computes the work for every group of the
chunk, the following runs read their share back. Random number generators are
reset between runs, so every group sees exactly the random draws a single
Captum call would make, and each group's result equals Captum's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._model.captum import (
    _batch_attribution,
    _expand_additional_forward_args,
    _format_additional_forward_args,
    _format_input_baseline,
    _format_tensor_into_tuples,
    _reshape_and_sum,
    _validate_input,
    approximation_parameters,
)
from .._model.capture import Captured, run_to_layer
from ..groups import NeuronGroup

Selector = Callable[[Any], Tensor]


def selector_value(captured: Captured) -> Tensor | Captured:
    """What a Captum neuron selector receives: the tensor, or the tuple if several."""
    return captured[0] if len(captured) == 1 else captured


def selector_cotangents(captured: Captured, selectors: Sequence[Selector]) -> Captured:
    """d selector / d layer output for each selector, stacked: (G, *output.shape) per tensor."""
    detached = tuple(t.detach().requires_grad_() for t in captured)
    per_group: list[list[Tensor]] = []
    with torch.enable_grad():
        for selector in selectors:
            # The selector's value per example; the batch sum's gradient is each example's.
            value = selector(selector_value(detached))
            grads = torch.autograd.grad(value.sum(), detached, allow_unused=True)
            per_group.append(
                [
                    torch.zeros_like(t) if g is None else g
                    for g, t in zip(grads, detached, strict=True)
                ]
            )
    return tuple(torch.stack([grads[i] for grads in per_group]) for i in range(len(detached)))


def flow_weights(captured: Captured, selectors: Sequence[Selector]) -> Captured:
    """How much each layer element counts for each selector, as a flow: (G, *shape) per tensor.

    NeuronGroups give their membership (all positions of each neuron, weighted);
    other Captum selectors give the derivative of the selector, which for an
    index selector is the same one-hot membership.
    """
    others = [s for s in selectors if not isinstance(s, NeuronGroup)]
    derived = iter(zip(*selector_cotangents(captured, others), strict=True)) if others else None
    rows: list[tuple[Tensor, ...]] = []
    for selector in selectors:
        if isinstance(selector, NeuronGroup):
            if len(captured) != 1:
                raise ValueError("a NeuronGroup needs a layer with one output tensor")
            rows.append((selector.membership(captured[0]).expand_as(captured[0]),))
        else:
            rows.append(next(derived))
    return tuple(torch.stack([row[i] for row in rows]) for i in range(len(captured)))


def batched_vjp(
    outputs: Captured,
    inputs: tuple[Tensor, ...],
    cotangents: Captured,
    vectorize: bool = False,
    retain_graph: bool = False,
) -> tuple[Tensor, ...]:
    """Vector-Jacobian products for G stacked cotangents over one forward graph.

    By default one backward pass per group reuses the graph (``retain_graph``),
    which on CPUs is faster than a vmapped pass and keeps memory at one
    group's backward. ``vectorize`` makes it one vmapped backward pass for all
    groups, for backward hooks that may run only once per forward (DeepLIFT).
    ``retain_graph`` keeps the graph after the last group too.
    Returns, per input tensor, a tensor of shape (G, *input.shape).
    """
    n_groups = cotangents[0].shape[0]
    if vectorize and n_groups > 1:
        grads = torch.autograd.grad(
            outputs,
            inputs,
            cotangents,
            retain_graph=retain_graph,
            allow_unused=True,
            is_grads_batched=True,
        )
        return tuple(
            inp.new_zeros((n_groups, *inp.shape)) if g is None else g
            for g, inp in zip(grads, inputs, strict=True)
        )
    per_group = [
        torch.autograd.grad(
            outputs,
            inputs,
            tuple(c[g] for c in cotangents),
            retain_graph=retain_graph or g < n_groups - 1,
            allow_unused=True,
        )
        for g in range(n_groups)
    ]
    return tuple(
        torch.stack(
            [torch.zeros_like(inp) if grads[i] is None else grads[i] for grads in per_group]
        )
        for i, inp in enumerate(inputs)
    )


def group_input_gradients(
    forward_fn: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    layer: nn.Module,
    selectors: Sequence[Selector],
    additional_forward_args: Any = None,
    use_input: bool = False,
    vectorize: bool = False,
) -> tuple[Tensor, ...]:
    """Gradients of every selector w.r.t. the inputs: one forward to the layer, shared."""
    inputs_tuple = _format_tensor_into_tuples(inputs)
    with torch.enable_grad():
        # One forward pass, stopped at the layer, shared by every selector.
        captured = run_to_layer(forward_fn, inputs, layer, additional_forward_args, use_input)
        # What each selector sends back from the layer: d selector / d layer output.
        cotangents = selector_cotangents(captured, selectors)
        # Back from the layer to the inputs, once per selector, over the one graph.
        return batched_vjp(captured, inputs_tuple, cotangents, vectorize)


def group_values(
    forward_fn: Callable[..., Any],
    inputs: Any,
    layer: nn.Module,
    selectors: Sequence[Selector],
    additional_forward_args: Any = None,
    use_input: bool = False,
) -> list[Tensor]:
    """Every selector's value, (N,) each, from one gradient-free forward to the layer."""
    with torch.no_grad():
        captured = run_to_layer(forward_fn, inputs, layer, additional_forward_args, use_input)
        value = selector_value(captured)
        return [selector(value) for selector in selectors]


class RandomState:
    """Snapshot of the Python, NumPy and torch generators (CUDA too, if in use)."""

    def __init__(self) -> None:
        self.python = random.getstate()
        self.numpy = np.random.get_state()  # noqa: NPY002 (Captum draws from it)
        self.torch = torch.get_rng_state()
        in_use = torch.cuda.is_available() and torch.cuda.is_initialized()
        self.cuda = torch.cuda.get_rng_state_all() if in_use else None

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)  # noqa: NPY002 (Captum draws from it)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _tensors_in(values: Sequence[Any]) -> list[Tensor]:
    found: list[Tensor] = []
    for value in values:
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(_tensors_in(value))
    return found


class _Replay:
    """Stands in for a Captum ``gradient_func`` or ``forward_func`` across groups.

    ``compute_all`` returns one result per group for the arguments of one call.
    During the first run (group 0) every call is computed and recorded; during
    later runs call ``i`` returns the recorded result of call ``i`` for the
    current group, after checking that it got the same tensors.
    """

    def __init__(self, compute_all: Callable[..., list[Any]]) -> None:
        self._compute_all = compute_all
        self._records: list[tuple[list[Tensor], list[Any]]] = []
        self._group = 0
        self._call = 0

    def next_group(self) -> None:
        self._group += 1
        self._call = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tensors = _tensors_in([*args, *kwargs.values()])
        if self._group == 0:
            # First run: compute this call for every group, keep the results, answer group 0.
            results = self._compute_all(*args, **kwargs)
            self._records.append((tensors, results))
            return results[0]
        # Later runs: the algorithm makes the same calls in the same order; read them back.
        if self._call >= len(self._records):
            raise RuntimeError("the attribution algorithm made more calls than when recorded")
        recorded, results = self._records[self._call]
        self._call += 1
        # Same random draws, same arguments: anything else would not be Captum's result.
        if len(recorded) != len(tensors) or not all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(recorded, tensors, strict=True)
        ):
            raise RuntimeError(
                "the attribution algorithm was not deterministic across groups; "
                "results would not match one Captum call per group"
            )
        return results[self._group]


def run_per_group(
    algorithm: Callable[[_Replay], Any],
    compute_all: Callable[..., list[Any]],
    n_groups: int,
    random_state: RandomState,
) -> list[Any]:
    """Run ``algorithm(replay)`` once per group, computing the shared work once.

    The generators are reset to ``random_state`` before every run, so every
    group (of every chunk) sees the draws of one plain Captum call.
    """
    replay = _Replay(compute_all)
    results = []
    for group in range(n_groups):
        if group:
            replay.next_group()
        # Every run starts from the generators of one plain Captum call.
        random_state.restore()
        results.append(algorithm(replay))
    return results


def split_per_group(stacked: tuple[Tensor, ...]) -> list[tuple[Tensor, ...]]:
    """(G, ...) tensors per input -> one tuple of tensors per group."""
    return [tuple(t[g] for t in stacked) for g in range(stacked[0].shape[0])]


def chunks(items: Sequence[Any], size: int | None) -> list[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items (all at once if None)."""
    if size is None:
        return [items]
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass(frozen=True)
class PathPoints:
    """Where one batch of integration steps evaluates the model: ``inputs`` at the points of
    the straight path from the baselines, stacked step-major as Captum stacks them and
    requiring gradients; the matching extra forward arguments; the quadrature weights."""

    inputs: tuple[Tensor, ...]
    additional_forward_args: Any
    step_sizes: list[float]

    @property
    def n_points(self) -> int:
        return len(self.step_sizes)


class Integral:
    """An integral along the straight path from the baselines to the inputs, set up as Captum
    sets it up (its input formatting and checks, its quadrature, its step batching).

    ``over(step)`` sums ``step(points)`` over every batch of steps: all at once, or
    ``internal_batch_size`` rows at a time as Captum's ``_batch_attribution``.
    """

    def __init__(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Any,
        additional_forward_args: Any,
        n_steps: int,
        method: str,
        internal_batch_size: int | None,
    ) -> None:
        self.inputs, self.baselines = _format_input_baseline(inputs, baselines)
        _validate_input(self.inputs, self.baselines, n_steps, method)
        self.additional_forward_args = additional_forward_args
        self.n_steps, self.method, self.internal_batch_size = n_steps, method, internal_batch_size
        self.num_examples = self.inputs[0].shape[0]

    def over(self, step: Callable[[PathPoints], Any], endpoint: bool = False) -> Any:
        """The sum of ``step`` over the path. ``endpoint``: the method evaluates ``n_steps + 1``
        points and takes differences of consecutive ones (conductance)."""
        points = self.n_steps + 1 if endpoint else self.n_steps
        if self.internal_batch_size is None:
            return self._attribute(step, self.method, points)
        return _batch_attribution(
            self,
            self.num_examples,
            self.internal_batch_size,
            points,
            include_endpoint=endpoint,
            step=step,
            method=self.method,
        )

    def _attribute(
        self,
        step: Callable[[PathPoints], Any],
        method: str,
        n_steps: int,
        step_sizes_and_alphas: tuple[list[float], list[float]] | None = None,
    ) -> Any:
        """``step`` on ``n_steps`` points (Captum's ``_batch_attribution`` calls this with the
        step sizes and alphas of each batch, counting an endpoint batch's points minus one)."""
        if step_sizes_and_alphas is None:
            step_sizes_func, alphas_func = approximation_parameters(method)
            step_sizes_and_alphas = step_sizes_func(n_steps), alphas_func(n_steps)
        step_sizes, alphas = step_sizes_and_alphas
        scaled = tuple(
            torch.cat([base + alpha * (inp - base) for alpha in alphas], dim=0).requires_grad_()
            for inp, base in zip(self.inputs, self.baselines, strict=True)
        )
        extra = _format_additional_forward_args(self.additional_forward_args)
        extra = _expand_additional_forward_args(extra, len(alphas)) if extra is not None else None
        return step(PathPoints(scaled, extra, list(step_sizes)))


def layer_conductance(layer_eval: Tensor, layer_grads: Tensor, num_examples: int) -> Tensor:
    """Captum's layer conductance: sum over steps of (y(a_{s+1}) - y(a_s)) * dF/dy(a_s).

    ``layer_eval`` and ``layer_grads`` hold n_steps + 1 points, step-major.
    Returns (num_examples, *layer_shape).
    """
    n_steps = layer_eval.shape[0] // num_examples - 1
    diffs = layer_eval[num_examples:] - layer_eval[:-num_examples]
    return _reshape_and_sum(
        diffs * layer_grads[:-num_examples], n_steps, num_examples, tuple(layer_eval.shape[1:])
    )
