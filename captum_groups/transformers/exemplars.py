"""Token exemplars: the (example, position) pairs where a group is most active, shown as
text with the tokens shaded by the group's value (as Neuronpedia shows a feature's top
activations), or, for a vision transformer, as the image patches they read."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from .._io.plain_text import plain_text
from .._model.capture import layer_outputs
from .._validation.checks import Count, ParameterError
from ..data import Data, iter_batches
from ..groups import NeuronGroup

__all__ = [
    "TokenExemplars",
    "group_per_position",
    "patch_box",
    "plot_token_exemplars",
    "token_exemplars",
    "token_exemplars_html",
]


def group_per_position(group: NeuronGroup, output: Tensor) -> Tensor:
    """The group's value at each position of a token tensor: (N, T).

    The positions are the first axis after the batch that is not the units' axis (the
    tokens of (N, T, F) and (N, T, heads, d_head)); position t's value is the group read
    with ``reduction=(t,)``: its units at that token, averaged over any axis left.

    Examples
    --------
    >>> out = torch.arange(24.0).reshape(1, 4, 6)  # (N, T, F)
    >>> group_per_position(NeuronGroup("mlp", [0, 1], dim=-1), out)
    tensor([[ 1., 13., 25., 37.]])
    """
    axis = group.channel_axis(output.ndim)
    positions = output.shape[2 if axis == 1 else 1]
    return torch.stack([group.replace(reduction=(t,))(output) for t in range(positions)], 1)


@dataclass(frozen=True)
class TokenExemplars:
    """The top (example, position) pairs of a group, best first.

    Attributes
    ----------
    values : Tensor
        (k,) the group's value at each pair.
    examples : Tensor
        (k,) data-set index of each pair's example.
    positions : Tensor
        (k,) its token position.
    contexts : Tensor
        (k, T) the group's value at every position of each pair's example (to shade
        its context).

    Examples
    --------
    >>> found = TokenExemplars(torch.tensor([2.0]), torch.tensor([4]), torch.tensor([1]),
    ...                        torch.tensor([[0.5, 2.0, 0.0]]))
    >>> [(int(e), int(p)) for e, p in zip(found.examples, found.positions)]
    [(4, 1)]
    """

    values: Tensor
    examples: Tensor
    positions: Tensor
    contexts: Tensor


def token_exemplars(
    model: nn.Module, group: NeuronGroup, data: Data, k: int = 10, batch_size: int = 64
) -> TokenExemplars:
    """The ``k`` (example, position) pairs of ``data`` where ``group`` is most active.

    Parameters
    ----------
    model : nn.Module
        The model (e.g. :func:`~captum_groups.transformers.hooked`'s).
    group : NeuronGroup
        A group of a token tensor's units (``dim`` named).
    data : Tensor, Dataset, DataLoader or list of batches
        Token ids or images, read by the package's one data rule; examples are
        numbered in reading order.
    k : int
        How many pairs.
    batch_size : int
        Examples per forward pass.

    Examples
    --------
    >>> from captum_groups.induction import induction_data, tiny_gpt
    >>> from captum_groups.transformers import hooked
    >>> model, (tokens, _) = hooked(tiny_gpt()), induction_data(50)
    >>> head = NeuronGroup("blocks.1.attn.hook_z", [0], dim=2)
    >>> found = token_exemplars(model, head, tokens, k=3)
    >>> found.values.shape, found.contexts.shape, bool(found.values[0] >= found.values[-1])
    (torch.Size([3]), torch.Size([3, 20]), True)
    """
    Count(1).check(k, "k")
    layer = group.resolve(model)
    per_example: list[Tensor] = []
    with torch.no_grad():
        for batch in iter_batches(data, batch_size, "data"):
            output = layer_outputs(model, batch, layer, batch_size)
            group.validate_output(output, layer)
            per_example.append(group_per_position(group, output).float().cpu())
    if not per_example:
        raise ParameterError("data", "data holds no examples")
    values = torch.cat(per_example)
    top = values.flatten().topk(min(k, values.numel()))
    examples, positions = top.indices // values.shape[1], top.indices % values.shape[1]
    return TokenExemplars(top.values, examples, positions, values[examples])


def _shade(value: float, limit: float) -> str:
    """A CSS background: orange for positive values, blue for negative, by size."""
    strength = 0.0 if limit == 0 else min(1.0, abs(value) / limit)
    colour = "255, 140, 0" if value >= 0 else "49, 130, 189"
    return f"background: rgba({colour}, {strength:.2f})"


def token_exemplars_html(
    found: TokenExemplars,
    tokens: Tensor,
    decode: Callable[[int], str] = str,
    context: int = 8,
) -> str:
    """The exemplars as HTML: each pair's context, tokens shaded by the group's value, the
    exemplar's own token outlined. Token texts are escaped.

    Parameters
    ----------
    found : TokenExemplars
        From :func:`token_exemplars`.
    tokens : Tensor
        (N, T) the token ids the exemplars were mined on.
    decode : callable
        Token id -> text (a tokenizer's ``decode``); the id itself by default.
    context : int
        Tokens shown before the exemplar's position.

    Examples
    --------
    >>> found = TokenExemplars(torch.tensor([2.0]), torch.tensor([0]), torch.tensor([1]),
    ...                        torch.tensor([[0.5, 2.0, 0.0]]))
    >>> text = token_exemplars_html(found, torch.tensor([[3, 4, 5]]), lambda i: f"<{i}>")
    >>> "&lt;4&gt;" in text and "<4>" not in text
    True
    """
    limit = float(found.contexts.abs().max()) if found.contexts.numel() else 0.0
    rows = []
    for value, example, position, shades in zip(
        found.values.tolist(), found.examples.tolist(), found.positions.tolist(), found.contexts,
        strict=True,
    ):  # fmt: skip
        start = max(0, position - context)
        spans = []
        for t in range(start, position + 1):
            text = html.escape(decode(int(tokens[example, t])))
            border = "outline: 1px solid #333; " if t == position else ""
            spans.append(f'<span style="{border}{_shade(float(shades[t]), limit)}">{text}</span>')
        rows.append(
            f'<div class="token-exemplar" title="example {example}, position {position}">'
            f"<b>{value:.3g}</b> {' '.join(spans)}</div>"
        )
    return "\n".join(rows)


@plain_text
def plot_token_exemplars(
    found: TokenExemplars,
    tokens: Tensor,
    decode: Callable[[int], str] = str,
    context: int = 8,
) -> Figure:
    """The exemplars as a figure: one row per pair, its context's tokens shaded by the
    group's value (orange positive, blue negative), the exemplar's token framed.

    Examples
    --------
    >>> found = TokenExemplars(torch.tensor([2.0]), torch.tensor([0]), torch.tensor([1]),
    ...                        torch.tensor([[0.5, 2.0, 0.0]]))
    >>> figure = plot_token_exemplars(found, torch.tensor([[3, 4, 5]]))
    >>> len(figure.axes)
    1
    """
    limit = float(found.contexts.abs().max()) if found.contexts.numel() else 1.0
    figure = Figure(figsize=(0.55 * (context + 3), 0.4 * max(1, len(found.values)) + 0.3))
    ax = figure.add_subplot()
    for row, (value, example, position, shades) in enumerate(
        zip(found.values.tolist(), found.examples.tolist(), found.positions.tolist(),
            found.contexts, strict=True)
    ):  # fmt: skip
        y = len(found.values) - 1 - row
        ax.text(-0.2, y + 0.45, f"{value:.3g}", ha="right", va="center", fontsize=8)
        for column, t in enumerate(range(max(0, position - context), position + 1)):
            share = float(shades[t]) / limit if limit else 0.0
            colour = (1.0, 0.55, 0.0, min(1.0, abs(share))) if share >= 0 else (
                0.19, 0.51, 0.74, min(1.0, abs(share)))  # fmt: skip
            ax.add_patch(_cell(column, y, colour, framed=t == position))
            ax.text(column + 0.45, y + 0.45, decode(int(tokens[example, t])), ha="center",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_xlim(-1.2, context + 1)
    ax.set_ylim(0, max(1, len(found.values)))
    ax.axis("off")
    return figure


def _cell(column: int, row: int, colour: tuple, framed: bool) -> Rectangle:
    return Rectangle(
        (column, row), 0.9, 0.9, facecolor=colour, edgecolor="#333" if framed else "none"
    )


def patch_box(
    position: int, image_size: int | Sequence[int], patch_size: int, class_token: bool = True
) -> tuple[int, int, int, int]:
    """The image box (top, left, height, width) a vision transformer's token reads.

    Tokens are the class token (when ``class_token``) and then the patches, row by row,
    as torchvision's and HuggingFace's ViTs order them.

    Examples
    --------
    >>> patch_box(1, 8, 4), patch_box(4, 8, 4)  # first and last of 2 x 2 patches
    ((0, 0, 4, 4), (4, 4, 4, 4))
    >>> patch_box(0, 8, 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: position 0 is the class token, which reads no patch ...
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    columns, rows = width // patch_size, height // patch_size
    index = position - (1 if class_token else 0)
    if class_token and position == 0:
        raise ParameterError(
            "position", "position 0 is the class token, which reads no patch (it reads all)"
        )
    if not 0 <= index < rows * columns:
        raise ParameterError(
            "position", f"position {position} is out of range for {rows * columns} patches"
        )
    return (index // columns) * patch_size, (index % columns) * patch_size, patch_size, patch_size
