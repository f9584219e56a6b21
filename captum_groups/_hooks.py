"""The one place that captures layer outputs; every hook is removed, also on error.

Forward passes that only need a layer's output stop right after that layer
(the rest of the network is never computed): the capturing hook raises
:class:`_StopForward`, which :func:`run_to_layer` catches.

Hooks act only on the thread that registered them (:func:`on_this_thread`):
while one thread attributes, another thread running the same model sees the
plain model, and two threads attributing on one model each get their own
result. What is not thread-safe, and why: the model's buffers are restored
after a call in training mode (so do not train the model in another thread
meanwhile); Captum's DeepLift, DeepLiftShap, guided backpropagation and
deconvolution put Captum's own hooks on the model's modules, which act on
every thread; Lucent's renderings run one at a time (a lock), since Lucent
keeps global state.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

import captum
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from ._captum import _run_forward
from ._checks import check_positive_int
from ._data import Data, iter_batches
from ._errors import ParameterError
from .groups import Layer, layer_name, resolve_layer

__all__ = [
    "CHOSEN",
    "LayerCapture",
    "call_scope",
    "choose_call",
    "chosen_call",
    "runs_text",
    "drop_new_attributes",
    "frozen_parameters",
    "guarded_call",
    "layer_activations",
    "layer_outputs",
    "model_outputs",
    "model_of",
    "on_this_thread",
    "preserve_buffers",
    "probe_runs",
    "training_modules",
    "warn_if_training",
    "record",
    "run_to_layer",
]

Captured = tuple[Tensor, ...]

_STOCHASTIC_IN_TRAINING = (_DropoutNd, _NormBase)


class _StopForward(Exception):
    """Raised inside a hook to end a forward pass once the layer has run."""


CHOSEN: Any = type("Chosen", (), {"__repr__": lambda self: "CHOSEN"})()
"""``LayerCapture(call=CHOSEN)``: record the run of the layer chosen in the current
:func:`call_scope` (every run, if none was chosen)."""

_chosen_calls: ContextVar[dict[nn.Module, int] | None] = ContextVar(
    "captum_groups_chosen_calls", default=None
)


@contextmanager
def call_scope() -> Iterator[None]:
    """A scope in which :func:`choose_call` picks the run of a module that captures record.

    Public calls open one (the attribution classes' ``attribute``): the groups
    name their ``call`` once, while they are checked, and every capture of
    that layer made inside the call, down to the shared engine, records that
    run. Scopes nest (an inner one starts with the outer one's choices) and
    belong to one thread, like the hooks themselves.

    Examples
    --------
    >>> cell = nn.Tanh()
    >>> with call_scope():
    ...     choose_call(cell, 1)
    ...     capture = LayerCapture(cell)
    >>> capture.call
    1
    """
    outer = _chosen_calls.get()
    token = _chosen_calls.set(dict(outer) if outer else {})
    try:
        yield
    finally:
        _chosen_calls.reset(token)


def choose_call(module: nn.Module, call: int | None) -> None:
    """Record, in the current :func:`call_scope`, that ``module``'s run ``call`` is meant
    (None: the module must run once)."""
    scope = _chosen_calls.get()
    if scope is None:
        if call is None:
            return
        raise RuntimeError("choose_call needs an active call_scope() to record a call in")
    if call is None:
        scope.pop(module, None)
    else:
        scope[module] = call


def chosen_call(module: nn.Module) -> int | None:
    """The run of ``module`` chosen in the current :func:`call_scope` (None if none)."""
    return (_chosen_calls.get() or {}).get(module)


def runs_text(runs: int) -> str:
    """``"calls 0 and 1"``, ``"calls 0, 1 and 2"``, ...: the calls of a module that runs
    ``runs`` times, as messages list them."""
    if runs <= 1:
        return "call 0"
    shown = [str(t) for t in range(min(runs, 8))]
    if runs > 8:
        return f"calls 0, 1, ..., {runs - 1}"
    return f"calls {', '.join(shown[:-1])} and {shown[-1]}"


def on_this_thread(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook``, acting only when the module runs on the thread that made this wrapper; on
    any other thread the module computes as if the hook were not there.

    Examples
    --------
    >>> calls = []
    >>> hook = on_this_thread(lambda *args: calls.append(threading.current_thread().name))
    >>> elsewhere = threading.Thread(target=hook, name="other")
    >>> elsewhere.start(); elsewhere.join(); hook()
    >>> calls
    ['MainThread']
    """
    owner = threading.get_ident()

    @functools.wraps(hook)
    def acting_here(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(*args, **kwargs)

    return acting_here


def model_of(forward_func: object, layer: nn.Module | None = None) -> nn.Module | None:
    """The nn.Module behind a forward function, if there is one."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    if isinstance(owner, nn.Module):
        return owner
    return layer


def _as_tuple(value: Any) -> Captured:
    values = value if isinstance(value, (tuple, list)) else (value,)
    tensors = tuple(v for v in values if isinstance(v, Tensor))
    if not tensors:
        raise TypeError(f"the layer produced no tensor to attribute to (got {type(value)})")
    return tensors


class LayerCapture:
    """Records what a layer produces (or receives) during forward passes.

    Parameters
    ----------
    layer : nn.Module
        The module to watch.
    use_input : bool
        Record the layer's positional inputs instead of its output.
    stop : bool
        End the forward pass as soon as the layer has run.
    after : LayerCapture, optional
        A capture that must have recorded something before this layer runs;
        a clear error is raised otherwise (e.g. a target layer that runs
        before the attributed layer).
    require_grad : bool
        Make the recorded tensors require gradients when nothing upstream
        does, so gradients with respect to the layer can be taken.
    order : list, optional
        A list shared by several captures: each call appends its layer, so
        the order in which layers run can be read off.
    model : nn.Module, optional
        The model the layer belongs to, to name the layer in error messages.
    call : int or None
        For a module that runs several times in one forward pass, the run to
        record (0 = first; with ``stop`` the pass ends after it). None records
        every run (:attr:`output` then refuses more than one). By default, the
        run chosen in the current :func:`call_scope`, if any.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> with LayerCapture(model[1], stop=True) as cap:
    ...     cap.run(model, torch.ones(4, 2))
    >>> cap.output[0].shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        layer: nn.Module,
        use_input: bool = False,
        stop: bool = False,
        after: LayerCapture | None = None,
        require_grad: bool = False,
        order: list[nn.Module] | None = None,
        model: nn.Module | None = None,
        call: int | None = CHOSEN,
    ) -> None:
        if call is CHOSEN:
            call = chosen_call(layer)
        self.call: int | None = call
        self.runs = 0
        self.layer = layer
        self.use_input = use_input
        self.stop = stop
        self.after = after
        self.require_grad = require_grad
        self.order = order
        self.model = model
        self.calls: list[Captured] = []
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    @property
    def name(self) -> str:
        """The layer's dotted name in the model (its class name if no model is known)."""
        return repr(layer_name(self.model, self.layer))

    def _hook(self, module: nn.Module, args: Any, output: Any = None) -> None:
        self.runs += 1
        if self.call is not None and self.runs - 1 != self.call:
            return
        if self.after is not None and not self.after.calls:
            raise ValueError(
                f"layer {self.name} runs before layer {self.after.name}; a target or upper "
                f"group must belong to a layer that runs after the attributed (lower) layer"
            )
        tensors = _as_tuple(args if self.use_input else output)
        if self.require_grad:
            for tensor in tensors:
                if tensor.is_floating_point() and not tensor.requires_grad:
                    tensor.requires_grad_()
        self.calls.append(tensors)
        if self.order is not None:
            self.order.append(self.layer)
        if self.stop:
            raise _StopForward

    def __enter__(self) -> LayerCapture:
        if self.use_input:
            self._handle = self.layer.register_forward_pre_hook(on_this_thread(self._hook))
        else:
            self._handle = self.layer.register_forward_hook(on_this_thread(self._hook))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def run(
        self,
        forward_func: Callable[..., Any],
        inputs: Any,
        additional_forward_args: Any = None,
        target: Any = None,
    ) -> Tensor | None:
        """Run ``forward_func``; return its (target-selected) output, or None if stopped."""
        try:
            return _run_forward(forward_func, inputs, target, additional_forward_args)
        except _StopForward:
            return None

    def check_runs(self) -> None:
        """Refuse a layer that ran several times with no call named, and a call it never made.

        The messages list the calls the layer made, so the user can name one
        with ``NeuronGroup(..., call=t)``.
        """
        if self.call is None and self.runs > 1:
            raise ParameterError(
                "call",
                f"layer {self.name} runs {self.runs} times in one forward pass "
                f"({runs_text(self.runs)}: a module reused inside the model, like the ReLU of "
                f"torchvision's BasicBlock, or a recurrent cell unrolled in time), so its output "
                f"is ambiguous; name the run with NeuronGroup(layer, indices, call=t), t from 0 "
                f"to {self.runs - 1}",
            )
        if self.call is not None and self.runs and self.call >= self.runs:
            raise ParameterError(
                "call",
                f"call={self.call} names no run of layer {self.name}: it runs {self.runs} "
                f"time(s) in one forward pass ({runs_text(self.runs)})",
            )

    @property
    def output(self) -> Captured:
        """What the layer produced in its one call (or the chosen call); a clear error
        otherwise."""
        self.check_runs()
        if not self.calls:
            raise RuntimeError(
                f"layer {self.name} did not run during the forward pass; is it part of the model?"
            )
        return self.calls[0]


def run_to_layer(
    forward_func: Callable[..., Any],
    inputs: Any,
    layer: nn.Module,
    additional_forward_args: Any = None,
    use_input: bool = False,
    call: int | None = CHOSEN,
) -> Captured:
    """Run the model up to ``layer`` and return the layer's output (or input).

    Nothing after the layer is computed. Gradients flow if grad mode is on.
    ``call`` picks the run of a module that runs several times (see
    :class:`LayerCapture`).

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> run_to_layer(model, torch.ones(4, 2), model[0])[0].shape
    torch.Size([4, 3])
    """
    with LayerCapture(layer, use_input=use_input, stop=True, call=call) as capture:
        capture.run(forward_func, inputs, additional_forward_args)
    return capture.output


def probe_runs(
    forward_func: Callable[..., Any],
    inputs: Any,
    layer: nn.Module,
    call: int | None = CHOSEN,
    additional_forward_args: Any = None,
) -> LayerCapture:
    """One full forward pass (no gradients) that checks how often ``layer`` runs.

    A layer that never runs, runs several times with no ``call`` named, or
    has no run ``call``, is refused with a message that lists its calls (see
    :meth:`LayerCapture.check_runs`). Returns the capture, holding the
    chosen run's output. Pass a single example: the pass is only a check.

    Examples
    --------
    >>> cell = nn.Tanh()
    >>> model = nn.Sequential(cell, cell)
    >>> probe_runs(model, torch.ones(1, 2), cell, call=1).runs
    2
    """
    capture = LayerCapture(layer, call=call, model=model_of(forward_func, layer))
    record(forward_func, inputs, [capture], additional_forward_args)
    if not capture.runs:
        raise ValueError(
            f"layer {capture.name} did not run in the model's forward pass; is it part of the "
            f"model?"
        )
    capture.check_runs()
    return capture


def record(
    forward_func: Callable[..., Any],
    inputs: Any,
    captures: Sequence[LayerCapture],
    additional_forward_args: Any = None,
) -> Any:
    """One full forward pass without gradients, recording into every capture.

    Returns the model's output. Buffers (e.g. BatchNorm running statistics)
    are restored afterwards.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> first, second = LayerCapture(model[0]), LayerCapture(model[2])
    >>> record(model, torch.ones(4, 2), [first, second]).shape
    torch.Size([4, 1])
    >>> len(first.calls), second.output[0].shape
    (1, torch.Size([4, 1]))
    """
    model = model_of(forward_func, captures[0].layer if captures else None)
    with torch.no_grad(), preserve_buffers(model), ExitStack() as stack:
        for capture in captures:
            stack.enter_context(capture)
        return _run_forward(forward_func, inputs, None, additional_forward_args)


def _batched(
    compute: Callable[[Tensor], Tensor],
    model: nn.Module,
    inputs: Data,
    batch_size: int,
    parameter: str,
) -> Tensor:
    """``compute`` on every batch of ``inputs``, concatenated; no gradients, buffers kept."""
    with torch.no_grad(), preserve_buffers(model):
        outputs = [
            compute(batch) for batch in iter_batches(inputs, batch_size, parameter) if len(batch)
        ]
    if not outputs:
        raise ValueError(f"{parameter} is empty; give at least one example")
    return torch.cat(outputs)


def layer_outputs(
    model: nn.Module,
    inputs: Data,
    layer: nn.Module,
    batch_size: int = 256,
    parameter: str = "inputs",
    call: int | None = CHOSEN,
) -> Tensor:
    """The layer's (first) output on all inputs, in batches, without gradients or buffer updates.

    ``inputs`` is read by the package's one data rule (:mod:`captum_groups._data`); each
    batch stops at the layer (at its run ``call``, see :class:`LayerCapture`).
    """
    return _batched(
        lambda batch: run_to_layer(model, batch, layer, call=call)[0],
        model,
        inputs,
        batch_size,
        parameter,
    )


def model_outputs(
    model: nn.Module, inputs: Data, batch_size: int = 256, parameter: str = "inputs"
) -> Tensor:
    """The model's output on all inputs, in batches, without gradients or buffer updates.

    ``inputs`` is read by the package's one data rule (:mod:`captum_groups._data`).
    """
    return _batched(model, model, inputs, batch_size, parameter)


def layer_activations(
    model: nn.Module, layer: Layer, data: Data, batch_size: int = 256, call: int | None = None
) -> Tensor:
    """A layer's output on every example of ``data``, in batches: what the estimators fit on.

    Parameters
    ----------
    model : nn.Module
        The model; it computes as it is (call ``model.eval()`` first for
        dropout or batch norm; a model in training mode gets a warning).
    layer : nn.Module or str
        The layer, or its dotted name.
    data : Tensor, Dataset, DataLoader or list of batches
        Read by the package's one data rule (:mod:`captum_groups._data`):
        batches that are tensors, ``(x, y)`` tuples or dicts.
    batch_size : int
        Examples per forward pass when ``data`` is a tensor or a Dataset.
    call : int, optional
        For a module that runs several times in one forward pass, which run
        (0 = first; see :class:`~captum_groups.NeuronGroup`).

    Returns
    -------
    Tensor
        The layer's output, examples first, e.g. (N, C, H, W). Each forward
        pass stops at the layer; no gradients are kept, the model's buffers
        are restored and its hooks removed, also after an error.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> layer_activations(model, "relu3", x[:10], batch_size=4).shape
    torch.Size([10, 64, 4, 4])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_positive_int(batch_size, "batch_size")
    module = resolve_layer(model, layer)
    probed: list[int] = []

    def outputs(batch: Tensor) -> Tensor:
        if not probed:
            probed.append(probe_runs(model, batch[:1], module, call).runs)
        return run_to_layer(model, batch, module, call=call)[0]

    with guarded_call(model, "layer_activations"):
        return _batched(outputs, model, data, batch_size, "data")


def training_modules(model: nn.Module | None) -> list[str]:
    """Names of the modules whose training mode makes outputs random or batch-dependent.

    Dropout in training mode drops units at random; batch and instance norms
    in training mode normalise with the statistics of the current batch.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    >>> training_modules(model), training_modules(model.eval())
    (['1', '2'], [])
    """
    if model is None:
        return []
    return [
        name or type(module).__name__
        for name, module in model.named_modules()
        if module.training and isinstance(module, _STOCHASTIC_IN_TRAINING)
    ]


_INTERNAL = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(captum.__file__)) + os.sep,
    contextlib.__file__,
)


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning, issued by the caller of this function, at
    the first frame outside this package, Captum and contextlib: the user's call."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def warn_if_training(model: nn.Module | None, caller: str) -> None:
    """Warn that ``caller``'s results are random or batch-dependent in training mode.

    The package computes what the model computes as it is (as Captum does),
    and restores its buffers afterwards; this warning names the modules that
    make the results differ from the model in eval mode. It points at the
    user's line.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_if_training(model, "example")
    >>> "dropout is active" in str(caught[0].message)
    True
    """
    active = training_modules(model)
    if active:
        shown = ", ".join(active[:4]) + (f" and {len(active) - 4} more" if len(active) > 4 else "")
        warnings.warn(
            f"{caller}: the model is in training mode, so dropout is active and batch norm uses "
            f"batch statistics ({shown}); results are random or depend on the batch. Call "
            f"model.eval() first for deterministic results (buffers are restored either way).",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


_inside_call: ContextVar[bool] = ContextVar("captum_groups_inside_call", default=False)


@contextmanager
def guarded_call(model: nn.Module | None, caller: str, needs_grad: bool = False) -> Iterator[None]:
    """What every public call does with the user's model: the train-mode policy, and the
    models and modes it cannot work with refused up front.

    The call computes with the model as it is (train or eval mode, as Captum
    does). Its buffers (BatchNorm running statistics) are restored on exit,
    also after an error, and a model in training mode gets one
    :func:`warn_if_training` warning per public call: calls nested inside
    another public call (a loop over batches or groups) stay quiet. A model
    compiled with ``torch.compile`` is refused (its layers cannot be hooked
    or traced: the message names the module it wraps), and so is a call that
    needs gradients (``needs_grad``) inside ``torch.inference_mode()``.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     with guarded_call(model, "outer"), guarded_call(model, "inner"):
    ...         _ = model(torch.randn(4, 2))
    >>> len(caught), int(model[1].num_batches_tracked)
    (1, 0)
    """
    if not _inside_call.get():
        check_callable_model(model, caller, needs_grad)
        warn_if_training(model, caller)
    token = _inside_call.set(True)
    try:
        with preserve_buffers(model):
            yield
    finally:
        _inside_call.reset(token)


def check_callable_model(model: nn.Module | None, caller: str, needs_grad: bool) -> None:
    """Refuse, up front and by name, what would otherwise fail deep inside a call: a
    ``torch.compile``'d model, and gradients asked for inside ``torch.inference_mode()``."""
    if model is not None and type(model).__name__ == "OptimizedModule":
        raise ParameterError(
            "model",
            f"{caller}: model is compiled with torch.compile, which hides its layers from "
            f"hooks and tracing; pass the module it wraps, model._orig_mod (it shares the "
            f"same parameters)",
        )
    if needs_grad and torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{caller} takes gradients, which torch.inference_mode() forbids; call it outside "
            f"the inference_mode block (it turns gradients on only where it needs them, and "
            f"leaves the model's flags alone)"
        )


@contextmanager
def preserve_buffers(model: nn.Module | None) -> Iterator[None]:
    """Restore the model's buffers on exit when any of its modules is in training mode.

    A forward pass in training mode updates BatchNorm running statistics; a
    pass that only inspects the model must not.
    """
    if model is None or not any(module.training for module in model.modules()):
        yield
        return
    saved = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in saved:
                    buf.copy_(saved[name])


@contextmanager
def drop_new_attributes(model: nn.Module, names: tuple[str, ...]) -> Iterator[None]:
    """Delete attributes in ``names`` that modules of ``model`` gain inside the block.

    Captum's DeepLift stores each nonlinearity's input and output on the module
    and deletes them in the backward pass; when no backward pass reaches a
    module (an error, or a module after the layer), they would stay behind.
    """
    had = {(id(m), n) for m in model.modules() for n in names if n in vars(m)}
    try:
        yield
    finally:
        for module in model.modules():
            for name in names:
                if name in vars(module) and (id(module), name) not in had:
                    delattr(module, name)


@contextmanager
def frozen_parameters(model: nn.Module | None) -> Iterator[None]:
    """Turn off ``requires_grad`` of the model's parameters inside the block.

    Attributions need gradients with respect to inputs and activations only;
    without this, every backward pass also works toward parameter gradients.
    The flags are restored on exit, also on error.
    """
    if model is None:
        yield
        return
    thawed = [p for p in model.parameters() if p.requires_grad]
    for parameter in thawed:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in thawed:
            parameter.requires_grad_(True)
