"""Feature visualization of neuron groups through Lucent, without Lucent's side effects.

Feature visualization by optimization asks what input drives a unit most; it
is the tool AI and neuroscience share (Kar, Kornblith, Fedorenko 2022). Lucent
draws channels and directions; :func:`group_objective` makes a
:class:`NeuronGroup` an ordinary Lucent ``Objective``, and
:func:`render_groups` renders many groups in one optimization batch.

Lucent's ``render_vis`` registers a forward hook on every module and never
removes it, and creates its image tensors on a module-level device (CUDA when
available, whatever the model's device). The wrappers here remove every hook
Lucent adds (also on error), put the images on the model's device, keep the
model's parameters out of the optimization, and restore the model's buffers.
Lucent names layers by joining module names with underscores, so ``"block.0"``
and a top-level ``"block_0"`` share one Lucent name; :func:`render_groups`
reads each group's layer by module identity instead, and
:func:`group_objective` refuses such an ambiguous name when given the model.
As everywhere in the package, the model computes as it is: in training mode
(dropout, batch statistics) with a warning.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lucent.optvis import objectives, param, render
from lucent.optvis.param import spatial as lucent_spatial
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._io.plain_text import plain_text
from .._model.capture import LayerCapture, on_this_thread, record, runs_text
from .._model.guards import frozen_parameters, guarded_call
from .._validation.checks import SEED, Count, Number, ParameterError, validate
from .._validation.deprecation import renamed_keywords
from ..groups import GroupsLike, NeuronGroup, as_group_list, layer_name, resolve_layer

__all__ = ["group_objective", "lucent_layer_name", "render_circuit", "render_groups"]


def lucent_layer_name(name: str) -> str:
    """Lucent's name for a layer: dots become underscores (``"layer3.1"`` -> ``"layer3_1"``).

    Examples
    --------
    >>> lucent_layer_name("layer3.1.conv2")
    'layer3_1_conv2'
    """
    return name.replace(".", "_")


def _dense_direction(group: NeuronGroup, size: int, like: Tensor) -> Tensor:
    direction = like.new_zeros(size)
    weights = group.weights if group.weights is not None else [1.0] * len(group.indices)
    direction[list(group.indices)] = torch.tensor(weights, dtype=like.dtype, device=like.device)
    return direction


def _check_kind(kind: object) -> None:
    if kind not in ("value", "direction"):
        raise ValueError(f"kind must be 'value' or 'direction', got {kind!r}")


def _group_loss(group: NeuronGroup, batch: int | None, kind: str, output: Tensor) -> Tensor:
    """The (negated, to be minimised) value or direction of a group on a layer output."""
    if batch is not None:
        output = output[batch : batch + 1]
    if kind == "value":
        return -group(output).mean()
    axis = group.channel_axis(output.ndim)
    direction = _dense_direction(group, output.shape[axis], output)
    shape = [1] * output.ndim
    shape[axis] = -1
    return -F.cosine_similarity(direction.view(shape), output, dim=axis).mean()


def _check_unambiguous(model: nn.Module, name: str) -> None:
    """Refuse a layer whose Lucent name is shared with another module of the model."""
    lucent_name = lucent_layer_name(name)
    sharing = [n for n, _ in model.named_modules() if n and lucent_layer_name(n) == lucent_name]
    if len(sharing) > 1:
        raise ValueError(
            f"layers {sharing} all become Lucent's layer name {lucent_name!r}, so a Lucent "
            f"objective cannot tell them apart; render_groups (which finds layers by module) "
            f"is not affected"
        )


def group_objective(
    group: NeuronGroup,
    batch: int | None = None,
    kind: str = "value",
    model: nn.Module | None = None,
) -> objectives.Objective:
    """A Lucent objective that maximises a neuron group.

    Parameters
    ----------
    group : NeuronGroup
        The group; its layer is a dotted name (or a module, with ``model``).
    batch : int, optional
        Apply to one image of the optimization batch only.
    kind : {"value", "direction"}
        ``"value"``: the group's own value (the weighted sum of its channels'
        spatial means), i.e. the weighted sum of Lucent ``channel``
        objectives. ``"direction"``: the cosine similarity between the
        activations and the group's weight vector, i.e. Lucent's
        ``direction`` objective (for weighted groups such as NMF components).
    model : nn.Module, optional
        Needed when the group's layer is a module, to find its name. When
        given, a layer whose Lucent name (dots become underscores) is shared
        with another module is refused.

    Returns
    -------
    lucent.optvis.objectives.Objective
        Composes with ``+``, ``-``, scalar ``*`` and Lucent's other objectives.

    Examples
    --------
    >>> from lucent.optvis import objectives
    >>> group = NeuronGroup("conv2", [1, 4])
    >>> objective = group_objective(group) - 0.1 * objectives.channel("conv2", 7)
    >>> type(objective).__name__
    'Objective'
    """
    if not isinstance(group, NeuronGroup):
        raise TypeError(f"group must be a NeuronGroup, got {group!r}")
    _check_kind(kind)
    name = group.layer if isinstance(group.layer, str) else None
    if name is None:
        if model is None:
            raise ValueError("the group's layer is a module; pass model= to find its name")
        name = layer_name(model, resolve_layer(model, group.layer, "group.layer"))
    if model is not None:
        _check_unambiguous(model, name)
    lucent_name = lucent_layer_name(name)

    def loss(hook: Callable[[str], Tensor]) -> Tensor:
        return _group_loss(group, batch, kind, hook(lucent_name))

    return objectives.Objective(loss, name=f"{kind}:{group!r}", description=f"maximise {group!r}")


@contextmanager
def _numpy_global_seeded(random_state: int | None) -> Iterator[None]:
    """NumPy's global generator seeded for the call and restored after it: Lucent's
    transforms (jitter, scale, rotate) draw from it, so a render moved the user's own
    later draws, and its result depended on them."""
    state = np.random.get_state()  # noqa: NPY002 (Lucent draws from the global generator)
    try:
        np.random.seed(random_state)  # noqa: NPY002
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


@contextmanager
def _latest_outputs(modules: Sequence[nn.Module]):  # type: ignore[no-untyped-def]
    """module -> its output in the latest forward pass, by module identity; hooks removed."""
    latest: dict[nn.Module, Tensor] = {}
    handles = [
        module.register_forward_hook(
            on_this_thread(lambda m, args, out: latest.__setitem__(m, out))
        )
        for module in dict.fromkeys(modules)
    ]
    try:
        yield latest
    finally:
        for handle in handles:
            handle.remove()


_RENDERING = threading.Lock()
"""Lucent keeps global state (its image device, its hooks' features): one rendering at once."""


def _is_lucents(hook: object) -> bool:
    """Whether a forward hook is one of Lucent's (``render.ModuleHook.hook_fn``)."""
    return isinstance(getattr(hook, "__self__", None), render.ModuleHook)


@contextmanager
def _lucent_on(model: nn.Module, device: torch.device):  # type: ignore[no-untyped-def]
    """Lucent's image tensors on ``device``; the hooks Lucent adds (only those) removed; mode
    restored; parameters frozen, since Lucent's ``loss.backward()`` would fill their grads."""
    modes = {m: m.training for m in model.modules()}
    with _RENDERING:
        device_before = lucent_spatial.device
        lucent_spatial.device = device
        try:
            with frozen_parameters(model):
                yield
        finally:
            lucent_spatial.device = device_before
            for module in model.modules():
                for key, hook in list(module._forward_hooks.items()):
                    if _is_lucents(hook):
                        del module._forward_hooks[key]
            for module, training in modes.items():
                module.training = training


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return module.in_channels
    return 3


def _check_size(
    model: nn.Module, groups: Sequence[NeuronGroup], channels: int, size: int, device
) -> None:
    """Run blank images through the model: the groups' layers must be reached once and fit."""
    named = [group for group in groups if group.call is not None]
    if named:
        raise ParameterError(
            "groups",
            f"group {named[0]!r} names a run of its layer (call={named[0].call}); renderings "
            f"optimise a layer that runs once in a forward pass, so render a module that runs "
            f"once (e.g. the block's output), or attribute and mine the run instead",
        )
    captures = [LayerCapture(group.resolve(model), model=model, call=None) for group in groups]
    blank = torch.zeros(len(groups), channels, size, size, device=device)
    try:
        record(model, blank, captures)
    except RuntimeError as error:
        raise ValueError(
            f"size={size} is too small for the model, or it cannot run on {channels}-channel "
            f"images ({error})"
        ) from error
    for group, capture in zip(groups, captures, strict=True):
        if len(capture.calls) > 1:
            raise ValueError(
                f"layer {capture.name} runs {len(capture.calls)} times in one forward pass "
                f"({runs_text(len(capture.calls))}); render a layer that runs once"
            )
        output = capture.output[0]
        if output.numel() == 0:
            raise ValueError(f"size={size} is too small: layer {group.layer!r} has an empty output")
        group.validate_output(output)


RENDER_CONSTRAINTS = {
    "size": Count(1),
    "steps": Count(1),
    "channels": Count(1, optional=True),
    "lr": Number(0, open=True),
    "random_state": SEED,
}
"""What :func:`render_groups`'s numeric parameters accept."""


def _batch_objective(
    groups: Sequence[NeuronGroup], modules: Sequence[nn.Module], kind: str, latest: dict
) -> objectives.Objective:
    """One Lucent objective for the batch: group ``i`` drives image ``i`` (their sum)."""

    def read(group: NeuronGroup, module: nn.Module, batch: int) -> objectives.Objective:
        return objectives.Objective(lambda hook: _group_loss(group, batch, kind, latest[module]))

    pairs = list(enumerate(zip(groups, modules, strict=True)))
    return sum((read(g, m, i) for i, (g, m) in pairs[1:]), read(groups[0], modules[0], 0))


def _optimise(
    model: nn.Module,
    objective: objectives.Objective,
    make_image: Callable[[], Any],
    lr: float,
    transforms: Sequence[Callable[[Tensor], Tensor]] | None,
    steps: int,
    size: int,
) -> list[np.ndarray]:
    """Lucent's ``render_vis`` for ``steps`` Adam steps, its interruption re-raised.

    ``render_vis`` catches ``KeyboardInterrupt``, prints a line and returns the
    half-optimised image; here the optimizer counts its steps, and a run that
    stopped early raises ``KeyboardInterrupt`` again, so Ctrl-C stops the caller.
    """
    taken = 0

    class CountingAdam(torch.optim.Adam):
        def step(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal taken
            loss = super().step(*args, **kwargs)
            taken += 1
            return loss

    with contextlib.redirect_stdout(io.StringIO()):
        images = render.render_vis(
            model,
            objective,
            make_image,
            optimizer=lambda params: CountingAdam(params, lr=lr),
            transforms=list(transforms or []),
            thresholds=(steps,),
            preprocess=False,
            progress=False,
            show_image=False,
            fixed_image_size=size,
        )
    if taken < steps:
        raise KeyboardInterrupt(f"rendering interrupted after {taken} of {steps} steps")
    return images


@renamed_keywords(seed="random_state")
def render_groups(
    model: nn.Module,
    groups: GroupsLike,
    size: int = 64,
    steps: int = 128,
    kind: str = "value",
    channels: int | None = None,
    param_f: Callable[[], Any] | None = None,
    transforms: Sequence[Callable[[Tensor], Tensor]] | None = None,
    lr: float = 0.05,
    decorrelate: bool | None = None,
    random_state: int = 0,
    figure: bool = False,
) -> np.ndarray | tuple[np.ndarray, Figure]:
    """Render one image per group by optimization (Lucent), all groups in one batch.

    Parameters
    ----------
    model : nn.Module
        The model; it is left with exactly the hooks, mode, flags,
        parameters and buffers it had (Lucent's leaked hooks are removed,
        also on error). It renders as it is: call ``model.eval()`` first for
        a model with dropout or batch norm (a model in training mode gets a
        warning).
    groups : NeuronGroup, GroupSet or sequence of NeuronGroup
        The groups to draw (layers as dotted names or modules; found by
        module identity, so Lucent's underscore names cannot mix them up).
    size : int
        Image side in pixels.
    steps : int
        Optimization steps.
    kind : {"value", "direction"}
        See :func:`group_objective`.
    channels : int, optional
        Image channels; the first convolution's input channels by default.
    param_f : callable, optional
        A Lucent image parameterization; Fourier-space images by default.
    transforms : sequence of callables, optional
        Lucent transforms (robustness); none by default (right for tiny inputs;
        ``lucent.optvis.transform.standard_transforms`` suits ImageNet models).
    lr : float
        Adam learning rate.
    decorrelate : bool, optional
        Lucent's colour decorrelation (3-channel images on the model's device).
    random_state : int
        Seed of the starting image (the global generators are left as they were);
        formerly ``seed``.
    figure : bool
        Also return a matplotlib figure of the images (no window opens).

    Returns
    -------
    ndarray, or (ndarray, Figure)
        Images shaped (G, size, size, channels), values in [0, 1].

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn
    >>> images = render_groups(digits_cnn(), [NeuronGroup("relu3", [0, 1])], size=16, steps=8)
    >>> images.shape
    (1, 16, 16, 1)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    group_list = as_group_list(groups)
    modules = [resolve_layer(model, group.layer, "group.layer") for group in group_list]
    numbers = {"size": size, "steps": steps, "channels": channels, "lr": lr}
    validate(RENDER_CONSTRAINTS, {**numbers, "random_state": random_state})
    _check_kind(kind)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    channels = channels or _input_channels(model)
    if decorrelate is None:
        # Lucent's colour decorrelation matrix lives on its own global device and is
        # ImageNet's (3 channels): use it only where it applies and sits with the model
        lucent_device = "cuda" if torch.cuda.is_available() else "cpu"
        decorrelate = channels == 3 and device.type == lucent_device
    # Each context restores what it changes: the model's state and hooks, the user's torch
    # and NumPy random streams (Lucent draws from both), Lucent's global device, and the
    # hooks that read each layer's latest output for the objective (Lucent leaks its own).
    with (
        guarded_call(model, "render_groups", needs_grad=True),
        torch.random.fork_rng(devices=[]),
        _numpy_global_seeded(random_state),
        _lucent_on(model, device),
        _latest_outputs(modules) as latest,
    ):
        _check_size(model, group_list, channels, size, device)
        # one image per group, optimised together in one batch: each group's objective
        # reads only its own image of the batch
        objective = _batch_objective(group_list, modules, kind, latest)
        torch.manual_seed(random_state)
        make_image = param_f or (
            lambda: param.image(
                size,
                batch=len(group_list),
                channels=None if decorrelate else channels,
                decorrelate=decorrelate,
            )
        )
        images = _optimise(model, objective, make_image, lr, transforms, steps, size)
    result = np.asarray(images[-1])
    if result.ndim == 3:
        result = result[None]
    if not figure:
        return result
    return result, _grid(result, [g.name or repr(g) for g in group_list])


@plain_text
def _grid(images: np.ndarray, titles: Sequence[str]) -> Figure:
    columns = min(len(images), 6)
    rows = -(-len(images) // columns)
    canvas = Figure(figsize=(1.8 * columns, 1.9 * rows))
    for i, (image, title) in enumerate(zip(images, titles, strict=True)):
        axis = canvas.add_subplot(rows, columns, i + 1)
        axis.imshow(
            image[..., 0] if image.shape[-1] == 1 else image,
            cmap="gray_r" if image.shape[-1] == 1 else None,
        )
        axis.set_title(title[:28], fontsize=7)
        axis.axis("off")
    canvas.tight_layout()
    return canvas


def render_circuit(model: nn.Module, circuit: Any, **kwargs: Any) -> dict[str, np.ndarray]:
    """Render every node of a :class:`~captum_groups.Circuit`; node id -> image.

    All nodes are rendered together, in one optimisation (one image of the
    batch per node: each image's objective is its own group's, so the images
    do not interact). Keyword arguments go to :func:`render_groups`. Every
    circuit layer must be a layer of ``model`` (a circuit is tied to the model
    it was built on).

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> images = render_circuit(model, circuit, size=16, steps=4)
    >>> sorted(images) == sorted(circuit.nodes), images["relu3:0"].shape
    (True, (16, 16, 1))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for layer in circuit.layers:
        resolve_layer(model, layer, "circuit.layers")
    nodes = list(circuit.nodes)
    if not nodes:
        return {}
    with guarded_call(model, "render_circuit"):
        rendered = render_groups(model, [circuit.nodes[n] for n in nodes], **kwargs)
    return dict(zip(nodes, rendered, strict=True))
