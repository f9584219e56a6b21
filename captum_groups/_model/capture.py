"""The one place that captures layer outputs; every hook is removed, also on error.

(The guards every public call puts around the model are in :mod:`.guards`.)

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

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn

from .._model.captum import _run_forward
from .._validation.checks import check_positive_int
from .._validation.errors import ParameterError
from ..data import Data, iter_batches
from ..groups import Layer, layer_name, resolve_layer
from .guards import guarded_call, preserve_buffers

__all__ = [
    "CHOSEN",
    "LayerCapture",
    "call_scope",
    "choose_call",
    "chosen_call",
    "runs_text",
    "layer_activations",
    "layer_outputs",
    "logits_of",
    "model_outputs",
    "model_of",
    "on_this_thread",
    "probe_runs",
    "record",
    "run_to_layer",
]

Captured = tuple[Tensor, ...]


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
    # the package's own wrappers (the model as a function of its token embeddings) name the
    # model they call: layer names resolve on it
    wrapped = getattr(forward_func, "wrapped_model", None)
    if isinstance(wrapped, nn.Module):
        return wrapped
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    if isinstance(owner, nn.Module):
        return owner
    return layer


def not_run(name: str, layer: nn.Module | None, where: str = "in the model's forward pass") -> str:
    """The message for a layer that did not run, with the reason where one is known: the
    output projection of ``nn.MultiheadAttention`` is never called as a module (torch
    computes with its weights directly).

    Examples
    --------
    >>> attention = nn.MultiheadAttention(4, 2)
    >>> not_run("'attn.out_proj'", attention.out_proj)  # doctest: +ELLIPSIS
    "layer 'attn.out_proj' did not run in the model's forward pass; nn.MultiheadAttention ..."
    """
    message = f"layer {name} did not run {where}"
    if type(layer).__name__ == "NonDynamicallyQuantizableLinear":
        return (
            f"{message}; nn.MultiheadAttention computes with out_proj's weights without calling "
            f"it: wrap the model with captum_groups.transformers.hooked(model), whose hook "
            f"points (blocks.L.hook_attn_out, blocks.L.attn.hook_z per head) and out_proj run"
        )
    return f"{message}; is it part of the model?"


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
            raise RuntimeError(not_run(self.name, self.layer, "during the forward pass"))
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
        raise ValueError(not_run(capture.name, layer))
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

    ``inputs`` is read by the package's one data rule (:mod:`captum_groups.data`); each
    batch stops at the layer (at its run ``call``, see :class:`LayerCapture`).
    """
    return _batched(
        lambda batch: run_to_layer(model, batch, layer, call=call)[0],
        model,
        inputs,
        batch_size,
        parameter,
    )


def logits_of(output: Any) -> Tensor:
    """A model's output as a tensor: itself, or a HuggingFace output's ``logits``.

    Examples
    --------
    >>> logits_of((torch.ones(2), "cache")).shape
    torch.Size([2])
    """
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ParameterError("model", f"the model returned {type(output).__name__}, not logits")


def model_outputs(
    model: nn.Module, inputs: Data, batch_size: int = 256, parameter: str = "inputs"
) -> Tensor:
    """The model's output on all inputs, in batches, without gradients or buffer updates
    (a HuggingFace model's ``logits``, see :func:`logits_of`).

    ``inputs`` is read by the package's one data rule (:mod:`captum_groups.data`).
    """
    return _batched(lambda batch: logits_of(model(batch)), model, inputs, batch_size, parameter)


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
        Read by the package's one data rule (:mod:`captum_groups.data`):
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
