"""What every public call does with the user's model: the train-mode policy (one
warning per call), buffers restored, models and modes it cannot work with refused up front,
parameters and attributes left as they were."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import captum
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from .._validation.errors import ParameterError

__all__ = [
    "check_callable_model",
    "drop_new_attributes",
    "frozen_parameters",
    "guarded_call",
    "preserve_buffers",
    "training_modules",
    "warn_if_training",
]

_STOCHASTIC_IN_TRAINING = (_DropoutNd, _NormBase)


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
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # the package
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
        with preserve_buffers(model), dense_tokens(model):
            yield
    finally:
        _inside_call.reset(token)


@contextmanager
def dense_tokens(model: nn.Module | None) -> Iterator[None]:
    """``nn.TransformerEncoder``'s nested-tensor fast path off for the call, then restored.

    With a padding mask it turns the tokens into a NestedTensor whose padded rows are
    missing: a layer output read there would lack rows and fit no group. The dense path
    computes the same values at the kept rows.

    Examples
    --------
    >>> layer = nn.TransformerEncoderLayer(4, 2, 8, batch_first=True)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=True)
    >>> with dense_tokens(encoder):
    ...     during = encoder.use_nested_tensor
    >>> during, encoder.use_nested_tensor
    (False, True)
    """
    switched = [
        m
        for m in (model.modules() if model is not None else ())
        if isinstance(m, nn.TransformerEncoder) and getattr(m, "use_nested_tensor", False)
    ]
    for module in switched:
        module.use_nested_tensor = False
    try:
        yield
    finally:
        for module in switched:
            module.use_nested_tensor = True


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
