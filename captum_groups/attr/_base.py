"""The one base of the group attribution classes: constructor, checks, and the replay.

Every class of :mod:`captum_groups.attr` derives from :class:`GroupAttribution`
first and then from Captum's own bases, as Captum's classes do
(``NeuronAttribution`` or ``LayerAttribution``, then ``GradientAttribution`` or
``PerturbationAttribution``). The base holds the constructor, the
``multiplies_by_inputs`` property, the input and layer checks, and
:meth:`GroupAttribution._replay`, which runs a Captum algorithm once per group
on work shared by all groups (see :mod:`._engine`). A method that reuses a
Captum algorithm names it in ``_captum_class``; its ``attribute`` keeps
Captum's explicit signature and calls ``_replay`` (``gradient_shap.py`` is a
complete example). Parameters shared by all classes are described once, in
:mod:`._docs`.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from numbers import Real
from typing import Any, ClassVar, TypeVar

import torch
from captum.attr import (
    Attribution,
    GradientAttribution,
    LayerAttribution,
    NeuronAttribution,
    NoiseTunnel,
    PerturbationAttribution,
)
from torch import Tensor, nn

from .._model.captum import _format_tensor_into_tuples, _verify_select_neuron
from .._model.capture import LayerCapture, call_scope, choose_call, model_of, not_run, record
from .._model.guards import drop_new_attributes, guarded_call
from .._validation.checks import ParameterError, check_positive_int
from ..groups import GroupSet, Layer, NeuronGroup, common_call, layer_name, resolve_layer
from ._docs import RETURNS_LIKE_INPUTS, complete
from ._engine import (
    RandomState,
    Selector,
    chunks,
    group_input_gradients,
    group_values,
    run_per_group,
    split_per_group,
)
from ._tokens import attribute_tokens, is_token_ids

GroupArg = (
    NeuronGroup
    | GroupSet
    | Sequence[NeuronGroup | Callable[..., Tensor]]
    | int
    | tuple
    | Callable[..., Tensor]
)
"""What ``group`` accepts: a group, several groups, or any Captum neuron_selector."""


Method = TypeVar("Method", bound=Callable[..., Any])


def keeps_model(method: Method) -> Method:
    """Apply the train-mode policy to an ``attribute`` method (see ``guarded_call``).

    The model computes as it is; its buffers are restored on return (also
    after an error), and a model in training mode gets one warning per call.
    Place it under Captum's ``log_usage``: ``NoiseTunnel`` calls
    ``attribute.__wrapped__``, which is then this wrapper. The call also
    opens a ``call_scope``, in which the groups name
    the run of their layer (``NeuronGroup(..., call=t)``) once for the whole call.

    Examples
    --------
    >>> import torch
    >>> from captum.attr import GradientAttribution, NeuronAttribution, Saliency
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.attr import GroupAttribution
    >>> from captum_groups.datasets import digits_cnn
    >>> class GroupSaliency(GroupAttribution, NeuronAttribution, GradientAttribution,
    ...                     captum_class=Saliency):
    ...     @keeps_model
    ...     def attribute(self, inputs, group, additional_forward_args=None,
    ...                   attribute_to_neuron_input=False, group_batch_size=None):
    ...         return self._replay(inputs, group, additional_forward_args,
    ...                             attribute_to_neuron_input, group_batch_size)
    >>> model = digits_cnn()
    >>> saliency = GroupSaliency(model, "relu3")
    >>> saliency.attribute(torch.rand(2, 1, 8, 8), NeuronGroup("relu3", [0])).shape
    torch.Size([2, 1, 8, 8])
    >>> model.training, any(m._forward_hooks for m in model.modules())
    (False, False)
    """

    @functools.wraps(method)
    def attribute(self: Any, *args: Any, **kwargs: Any) -> Any:
        caller = f"{type(self).__name__}.{method.__name__}"
        model = model_of(self.forward_func, self.layer)
        if args:
            args = (_aliased(args[0]), *args[1:])
        elif "inputs" in kwargs:
            kwargs["inputs"] = _aliased(kwargs["inputs"])
        inputs = args[0] if args else kwargs.get("inputs")
        with guarded_call(model, caller, needs_grad=True), call_scope():
            if is_token_ids(inputs):
                return attribute_tokens(method, self, args, kwargs)
            return method(self, *args, **kwargs)

    return attribute  # type: ignore[return-value]


def _aliased(inputs: Any) -> Any:
    """The user's input tensors as new tensor objects over the same memory.

    Captum turns ``requires_grad`` on for the input tensors it is given and off
    again when it is done. On the user's own tensor that changes it during the
    call, and two threads attributing on one tensor race: one turns the flag
    off while the other runs its forward pass, whose layer output then has no
    gradient. An alias (``detach()``: no copy) gives every call its own flag.
    """
    if isinstance(inputs, Tensor) and not inputs.requires_grad:
        return inputs.detach()
    if isinstance(inputs, tuple):
        return tuple(_aliased(item) for item in inputs)
    return inputs


def inside_noise_tunnel() -> bool:
    """Whether the current call runs inside Captum's NoiseTunnel (which needs results whose
    first axis is the batch)."""
    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), NoiseTunnel):
            return True
        frame = frame.f_back
    return False


def _index_selector(index: int | tuple, value: Tensor | tuple[Tensor, ...]) -> Tensor:
    captured = value if isinstance(value, tuple) else (value,)
    return _verify_select_neuron(captured, index)


def _is_index(selector: object) -> bool:
    if isinstance(selector, bool):
        return False
    if isinstance(selector, int):
        return True
    return isinstance(selector, tuple) and all(
        isinstance(i, (int, slice)) and not isinstance(i, bool) for i in selector
    )


class GroupAttribution:
    """What every ``captum_groups.attr`` class shares.

    A subclass lists Captum's bases after this one, and names the Captum
    algorithm it replays, e.g. ``class GroupSaliency(GroupAttribution,
    NeuronAttribution, GradientAttribution, captum_class=Saliency)``.

    Examples
    --------
    Every class of :mod:`captum_groups.attr` is one; ``tests/attr/test_extending.py``
    writes a new one in 17 lines (see the contributor guide).

    >>> from captum_groups.attr import GroupAttribution, GroupGradient
    >>> from captum_groups.datasets import digits_cnn
    >>> method = GroupGradient(digits_cnn(), "relu3")
    >>> isinstance(method, GroupAttribution), type(method.layer).__name__
    (True, 'ReLU')
    """

    forward_func: Callable[..., Any]
    layer: nn.Module

    _captum_class: ClassVar[type[Attribution]]
    """The Captum algorithm :meth:`_replay` runs once per group, given as a class keyword:
    ``class GroupSaliency(..., captum_class=Saliency)``."""
    _vectorize: ClassVar[bool] = False
    """Run one vmapped backward pass per chunk of groups (for backward hooks that allow only
    one backward pass per forward pass, as DeepLIFT's) instead of one pass per group."""
    _leaves_attributes: ClassVar[tuple[str, ...]] = ()
    """Attributes the Captum algorithm may leave on the model's modules; removed after a run."""
    _multiply_by_inputs: bool | None = None
    """``multiplies_by_inputs``; None: Captum's answer for the kind of method."""

    def __init_subclass__(
        cls, captum_class: type[Attribution] | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if captum_class is not None:
            cls._captum_class = captum_class
        if not cls.__name__.startswith("_"):
            cls.__doc__ = complete(cls.__doc__, inspect.signature(cls.__init__), cls.__name__)
        returns = RETURNS_LIKE_INPUTS if issubclass(cls, NeuronAttribution) else None
        for name, method in vars(cls).items():
            if name.startswith("attribute") and callable(method):
                signature, owner = inspect.signature(method), f"{cls.__name__}.{name}"
                method.__doc__ = complete(method.__doc__, signature, owner, returns)

    def __init__(
        self, forward_func: Callable[..., Any], layer: Layer, device_ids: list[int] | None = None
    ) -> None:
        if isinstance(forward_func, nn.DataParallel):
            raise ValueError(
                "forward_func is an nn.DataParallel; captum_groups captures layers with one "
                "hook per call and does not gather across replicas; pass the wrapped module"
            )
        module = resolve_layer(forward_func, layer)
        kind = LayerAttribution if isinstance(self, LayerAttribution) else NeuronAttribution
        kind.__init__(self, forward_func, module, device_ids)  # type: ignore[arg-type]
        if isinstance(self, GradientAttribution):
            GradientAttribution.__init__(self, forward_func)

    @property
    def multiplies_by_inputs(self) -> bool:
        if self._multiply_by_inputs is None:
            return super().multiplies_by_inputs  # type: ignore[misc]
        return self._multiply_by_inputs

    def _layer_label(self) -> str:
        return repr(layer_name(model_of(self.forward_func), self.layer))

    def _selectors(self, group: GroupArg) -> tuple[list[Selector], list[object], bool]:
        """Normalise ``group`` to (selectors, originals, several-groups flag)."""
        if isinstance(group, NeuronGroup) or callable(group) or _is_index(group):
            items, several = [group], False
        elif isinstance(group, (GroupSet, list, tuple)):
            items, several = list(group), True
            if not items:
                raise ValueError("group is an empty sequence; give at least one group")
        else:
            raise TypeError(
                "group must be a NeuronGroup, a GroupSet, a sequence of NeuronGroups, or a "
                f"Captum neuron_selector (int, tuple of int/slice, callable); got {group!r}"
            )
        selectors: list[Selector] = []
        for item in items:
            if isinstance(item, NeuronGroup):
                module = resolve_layer(model_of(self.forward_func, None), item.layer, "group")
                if module is not self.layer:
                    raise ValueError(
                        f"group {item!r} belongs to layer {layer_name(None, item.layer)!r}, "
                        f"but this attribution is for layer {self._layer_label()}; "
                        f"all groups of one call must belong to the attributed layer"
                    )
                selectors.append(item)
            elif _is_index(item):
                selectors.append(partial(_index_selector, item))
            elif callable(item):
                selectors.append(item)
            else:
                raise TypeError(
                    f"group holds {item!r}; each element must be a NeuronGroup or a callable"
                )
        choose_call(self.layer, self._call_of(items))
        return selectors, items, several

    def _call_of(self, items: Sequence[object]) -> int | None:
        """The run of the attributed layer the groups name: one for all of them (callable
        selectors read that run too)."""
        return common_call(
            [item for item in items if isinstance(item, NeuronGroup)],
            "group",
            f"layer {self._layer_label()}",
            "one attribute call reads one run: attribute each call separately",
        )

    def _check_inputs(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: object = None,
    ) -> tuple[Tensor, ...]:
        inputs_tuple = _format_tensor_into_tuples(inputs)
        model = model_of(self.forward_func, self.layer)
        reference = next(iter(model.parameters()), None) if model is not None else None
        named: list[tuple[str, Tensor]] = [("inputs", t) for t in inputs_tuple]
        if isinstance(baselines, Tensor):
            named.append(("baselines", baselines))
        elif isinstance(baselines, tuple):
            named.extend(("baselines", b) for b in baselines if isinstance(b, Tensor))
        scalars = baselines if isinstance(baselines, tuple) else (baselines,)
        for scalar in scalars:
            if isinstance(scalar, Real) and not math.isfinite(float(scalar)):
                raise ValueError(f"baselines contain NaN or infinite values, got {scalar!r}")
        for parameter, tensor in named:
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{parameter} must be tensors, got {type(tensor).__name__}")
            if tensor.device.type == "meta":
                raise ValueError(
                    f"{parameter} are on the meta device, which holds shapes but no values; "
                    f"give real tensors (on the model's device)"
                )
            if tensor.is_inference():
                raise ParameterError(
                    parameter,
                    f"{parameter} were made inside torch.inference_mode(), so autograd cannot "
                    f"use them; pass a copy made outside it ({parameter}.clone())",
                )
            if reference is not None and tensor.device != reference.device:
                raise ValueError(
                    f"{parameter} are on {tensor.device} but the model's parameters are on "
                    f"{reference.device}; move them to the same device"
                )
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"{parameter} contain NaN or infinite values")
        for tensor in inputs_tuple:
            if tensor.ndim == 0 or tensor.shape[0] == 0:
                raise ValueError(
                    f"inputs must be a non-empty batch (N, ...) with N >= 1, got shape "
                    f"{tuple(tensor.shape)}"
                )
        if reference is not None and reference.device.type == "meta":
            raise ValueError(
                "the model's parameters are on the meta device, which holds no values; "
                "load or initialise them on a real device first"
            )
        return inputs_tuple

    def _check_layer(
        self,
        inputs: tuple[Tensor, ...],
        additional_forward_args: Any,
        use_input: bool,
        originals: list[object],
        later: Sequence[tuple[nn.Module, Sequence[NeuronGroup]]] = (),
    ) -> tuple[Tensor, ...]:
        """Run the model once (no gradients) to check the layer and the groups against it.

        ``later`` are (layer, groups) pairs of target or upper layers checked in
        the same pass: each must run once, and its groups must fit its output.
        Returns what the attributed layer produced in that pass.
        """
        model = model_of(self.forward_func)
        first = LayerCapture(self.layer, use_input, model=model)
        captures = [first] + [
            LayerCapture(m, after=first, model=model, call=common_call(groups))
            for m, groups in later
        ]
        record(self.forward_func, inputs, captures, additional_forward_args)
        if not first.runs:
            raise ValueError(not_run(self._layer_label(), self.layer))
        first.check_runs()
        for (module, groups), capture in zip(later, captures[1:], strict=True):
            if not capture.calls:
                raise ValueError(
                    f"layer {layer_name(model, module)!r} did not run in the model's forward "
                    f"pass after layer {self._layer_label()}"
                )
            capture.check_runs()
            for group in groups:
                group.validate_output(capture.calls[0][0], module)
        captured = first.calls[0]
        for item in originals:
            if isinstance(item, NeuronGroup):
                if len(captured) != 1:
                    raise ValueError(
                        f"layer {self._layer_label()} produces {len(captured)} tensors; "
                        f"a NeuronGroup needs one; pass a callable selector instead"
                    )
                item.validate_output(captured[0], self.layer)
            elif _is_index(item):
                index = (item,) if isinstance(item, int) else item
                shape = captured[0].shape[1:]
                if len(index) > len(shape) or any(
                    isinstance(i, int) and not -s <= i < s
                    for i, s in zip(index, shape, strict=False)
                ):
                    raise ValueError(
                        f"group index {item} is out of range for the layer output of shape "
                        f"{tuple(shape)} (batch axis excluded)"
                    )
        return captured

    def _prepare(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        group: GroupArg,
        additional_forward_args: Any,
        use_input: bool,
        baselines: object = None,
    ) -> tuple[list[Selector], bool]:
        """Validate everything; return the selectors and whether several groups were asked."""
        selectors, originals, several = self._selectors(group)
        inputs_tuple = self._check_inputs(inputs, baselines)
        self._check_layer(inputs_tuple, additional_forward_args, use_input, originals)
        return selectors, several

    @staticmethod
    def _chunks(selectors: list[Selector], group_batch_size: int | None) -> list[Sequence]:
        check_positive_int(group_batch_size, "group_batch_size", optional=True)
        return chunks(selectors, group_batch_size)

    @staticmethod
    def _assemble(results: list[Any], several: bool) -> Any:
        """One result per group -> Captum's shape, plus a group axis after the batch axis if
        several: (N, G, ...), so that wrappers such as NoiseTunnel, which assume the batch
        axis first, work.

        Results are detached: no autograd graph is kept alive by an attribution.
        """
        if isinstance(results[0], tuple):
            parts = [tuple(t.detach() for t in r) for r in results]
            if not several:
                return parts[0]
            return tuple(torch.stack([r[i] for r in parts], 1) for i in range(len(parts[0])))
        if not several:
            return results[0].detach()
        return torch.stack([r.detach() for r in results], 1)

    def _replay(
        self,
        inputs: Any,
        group: GroupArg,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        group_batch_size: int | None = None,
        **options: Any,
    ) -> Any:
        """Captum's ``_captum_class`` run once per group, on model work shared by all groups.

        ``inputs``, ``group``, ``additional_forward_args``,
        ``attribute_to_neuron_input`` and ``group_batch_size`` drive the group
        machinery; ``options`` are the Captum algorithm's own ``attribute``
        keywords (``baselines``, ``n_steps`` ...), passed by name. Every
        argument is explicit, so a user's subclass that overrides ``attribute``
        and calls ``super().attribute(...)`` works as with Captum's classes.

        A gradient method gets a ``gradient_func`` that returns its group's
        share of one forward and backward pass shared by all groups; a
        perturbation method gets a ``forward_func`` that returns its group's
        share of one shared forward pass (see :func:`._engine.run_per_group`).
        Every run sees the random draws of a single Captum call, so each
        group's result is exactly Captum's.
        """
        with call_scope():
            return self._replay_in_scope(
                inputs,
                group,
                additional_forward_args,
                attribute_to_neuron_input,
                group_batch_size,
                options,
            )

    def _replay_in_scope(
        self,
        inputs: Any,
        group: GroupArg,
        additional_forward_args: Any,
        use_input: bool,
        group_batch_size: int | None,
        options: dict[str, Any],
    ) -> Any:
        """:meth:`_replay` inside its call scope (the groups choose the layer's run)."""
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, use_input, options.get("baselines")
        )
        perturbs = issubclass(self._captum_class, PerturbationAttribution)
        leftovers = self._leaves_attributes

        def algorithm(shared: Callable[..., Any]) -> Any:
            if perturbs:
                method = self._captum_class(shared)
            else:
                method = self._captum_class(self.forward_func, **self._captum_options())
                method.gradient_func = shared
            cleanup = drop_new_attributes(self.forward_func, leftovers) if leftovers else None
            with cleanup or nullcontext():
                return method.attribute.__wrapped__(
                    method, inputs, additional_forward_args=additional_forward_args, **options
                )

        results: list[Any] = []
        random_state = RandomState()
        for chunk in self._chunks(selectors, group_batch_size):
            shared_work = self._values if perturbs else self._input_gradients
            compute_all = partial(shared_work, chunk, use_input)
            results.extend(run_per_group(algorithm, compute_all, len(chunk), random_state))
        return self._assemble(results, several)

    @contextmanager
    def _recording(self, use_input: bool, require_grad: bool = False) -> Iterator[LayerCapture]:
        """Gradients on, and the attributed layer recorded. Gradients are taken with
        ``torch.autograd.grad`` for the inputs and activations only, so the parameters'
        gradients are neither computed nor stored (and their flags are left alone)."""
        model = model_of(self.forward_func, self.layer)
        with (
            torch.enable_grad(),
            LayerCapture(self.layer, use_input, require_grad=require_grad, model=model) as capture,
        ):
            yield capture

    def _captum_options(self) -> dict[str, Any]:
        """Constructor keywords of the Captum algorithm beyond the model."""
        if self._multiply_by_inputs is None:
            return {}
        return {"multiply_by_inputs": self._multiply_by_inputs}

    def _input_gradients(
        self,
        chunk: Sequence[Selector],
        use_input: bool,
        forward_fn: Callable[..., Any],
        inputs: Any,
        target_ind: Any = None,
        additional_forward_args: Any = None,
    ) -> list[tuple[Tensor, ...]]:
        """A Captum ``gradient_func`` for every group of ``chunk``: one result per group."""
        grads = group_input_gradients(
            forward_fn,
            inputs,
            self.layer,
            chunk,
            additional_forward_args,
            use_input,
            self._vectorize,
        )
        return split_per_group(grads)

    def _values(self, chunk: Sequence[Selector], use_input: bool, *args: Any) -> list[Tensor]:
        """A Captum ``forward_func`` for every group of ``chunk``: each group's value."""
        return group_values(self.forward_func, args, self.layer, chunk, None, use_input)


class _MultipliesByInputs(GroupAttribution):
    """A method with Captum's ``multiply_by_inputs`` option (local or global attribution)."""

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: Layer,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        super().__init__(forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs
