"""A layered drawing of a Circuit: edge width by weight, exemplar thumbnails per node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torch import Tensor

from .._io.plain_text import plain_text
from ..data import Data, examples_at
from ._ids import TARGET

if TYPE_CHECKING:
    from .graph import Circuit


def _thumbnail(image: Tensor, box: tuple[int, ...], node: str) -> np.ndarray:
    """One exemplar crop as an image array (H, W) or (H, W, 3) in [0, 1]."""
    top, left, height, width = box
    if image.ndim != 3 or top + height > image.shape[-2] or left + width > image.shape[-1]:
        raise ValueError(
            f"the crop box {tuple(box)} of node {node!r} does not fit an image of shape "
            f"{tuple(image.shape)} from data; give the images the circuit was built on"
        )
    crop = image[..., top : top + height, left : left + width].detach().cpu().float()
    crop = (crop - crop.min()) / (crop.max() - crop.min()).clamp_min(1e-12)
    return crop[0].numpy() if crop.shape[0] == 1 else crop.permute(1, 2, 0).numpy()


@plain_text
def plot_circuit(
    circuit: Circuit,
    data: Data | None = None,
    thumbnails: int = 3,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw a circuit layer by layer, the target on top.

    Edges are drawn from lower to upper groups, their width proportional to
    the absolute weight: red for positive, blue for negative. With ``data``
    (the images the circuit's exemplars index), each node shows thumbnails of
    its top exemplar crops. Each node shows its id, size and label (with the
    label's score when the circuit records one). The figure is created
    without pyplot, so no window opens.

    Parameters
    ----------
    circuit : Circuit
        The circuit.
    data : Tensor, Dataset, DataLoader or list of batches, optional
        Images (N, C, H, W) that the circuit's exemplar indices refer to, in
        the same order (read by the package's one data rule).
    thumbnails : int
        Exemplar crops shown per node.
    figsize : (float, float), optional
        Figure size in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> figure = plot_circuit(circuit, x, thumbnails=2, title="digit 3")
    >>> type(figure).__name__
    'Figure'
    >>> import matplotlib.pyplot as plt; plt.close(figure)
    """
    if isinstance(thumbnails, bool) or not isinstance(thumbnails, int) or thumbnails < 0:
        raise ValueError(f"thumbnails must be an int >= 0, got {thumbnails!r}")
    width = max(len(level) for level in _levels(circuit))
    figure = Figure(figsize=figsize or (max(6.0, 2.2 * width), 2.0 * (len(circuit.layers) + 1)))
    draw_circuit(figure.add_subplot(), circuit, data, thumbnails)
    figure.axes[0].set_title(title or repr(circuit), fontsize=9)
    figure.tight_layout()
    return figure


def _levels(circuit: Circuit) -> list[list[str]]:
    return [circuit.node_ids(layer) for layer in circuit.layers] + [[TARGET]]


def _node_text(circuit: Circuit, node: str) -> str:
    if node == TARGET:
        return f"class {circuit.target}" if isinstance(circuit.target, int) else "target"
    group = circuit.nodes[node]
    heads = str(group.layer).endswith(
        (".attn.hook_z", ".attn.hook_q", ".attn.hook_k", ".attn.hook_v")
    )
    unit = "head" if heads else "neuron"
    text = f"{node}\n{len(group)} {unit}{'s' if len(group) != 1 else ''}"
    if group.label:
        score = circuit.label_details.get(node, {}).get("score")
        text += f"\n{group.label}" + (f" ({score:.2f})" if score is not None else "")
    return text


def _draw_edges(
    axis: Axes,
    circuit: Circuit,
    position: Mapping[str, tuple[float, float]],
    edge_values: Mapping[tuple[str, str], float] | None,
) -> None:
    """Edges as lines, width by |value|, red positive, blue negative; edges without a value
    (when ``edge_values`` are given) thin and grey."""
    shown = dict(circuit.edges) if edge_values is None else dict(edge_values)
    largest = max((abs(w) for w in shown.values()), default=1.0) or 1.0
    for lower, upper in circuit.edges:
        (x0, y0), (x1, y1) = position[lower], position[upper]
        weight = shown.get((lower, upper))
        if weight is None:
            axis.plot([x0, x1], [y0, y1], color="0.8", linewidth=0.6, zorder=1)
            continue
        axis.plot(
            [x0, x1],
            [y0, y1],
            color="tab:red" if weight > 0 else "tab:blue",
            linewidth=0.5 + 6 * abs(weight) / largest,
            alpha=0.35 + 0.5 * abs(weight) / largest,
            zorder=2,
        )


def _draw_node(
    axis: Axes,
    node: str,
    xy: tuple[float, float],
    text: str,
    thumbs: list[tuple[Tensor, tuple[int, int, int, int]]],
    frame: str | None,
) -> None:
    """A node's text box, with its exemplar thumbnails above it; ``frame`` highlights it
    in that colour (``"faded"``: another node is highlighted, this one is not)."""
    x, y = xy
    for j, (image, box) in enumerate(thumbs):
        picture = OffsetImage(
            _thumbnail(image, box, node), zoom=22 / max(box[2], box[3]), cmap="gray_r"
        )
        offset = (j - (len(thumbs) - 1) / 2) * 0.28
        axis.add_artist(AnnotationBbox(picture, (x + offset, y + 0.18), frameon=False, zorder=3))
    highlighted = frame is not None and frame != "faded"
    faded = frame == "faded" and node != TARGET
    axis.text(
        x,
        y - (0.12 if thumbs else 0),
        text,
        ha="center",
        va="top" if thumbs else "center",
        fontsize=8,
        zorder=4,
        alpha=0.55 if faded else 1.0,
        bbox={
            "boxstyle": "round",
            "facecolor": "white",
            "alpha": 0.85,
            "edgecolor": frame if highlighted else "0.6",
            "linewidth": 2.5 if highlighted else 1.0,
        },
    )


@plain_text
def draw_circuit(
    axis: Axes,
    circuit: Circuit,
    data: Tensor | None = None,
    thumbnails: int = 3,
    edge_values: Mapping[tuple[str, str], float] | None = None,
    node_colors: Mapping[str, str] | None = None,
    node_notes: Mapping[str, str] | None = None,
) -> None:
    """Draw a circuit into a matplotlib axis (see :func:`plot_circuit`).

    Parameters
    ----------
    axis : matplotlib Axes
        Where to draw.
    circuit, data, thumbnails
        As in :func:`plot_circuit`.
    edge_values : mapping of (str, str) to float, optional
        Draw these values (e.g. one image's flow along each edge) instead of
        the circuit's weights; other edges are drawn thin and grey.
    node_colors : mapping of str to color, optional
        Highlight these nodes with a frame of that color; the others fade.
    node_notes : mapping of str to str, optional
        An extra line of text under some nodes.
    """
    levels = _levels(circuit)
    thumbs = {
        node: circuit.exemplars.get(node, [])[:thumbnails] if data is not None else []
        for level in levels
        for node in level
    }
    wanted = sorted({index for items in thumbs.values() for index, _ in items})
    images = dict(zip(wanted, examples_at(data, wanted), strict=True)) if wanted else {}
    width = max(len(level) for level in levels)
    position: dict[str, tuple[float, float]] = {}
    for y, level in enumerate(levels):
        for i, node in enumerate(level):
            position[node] = ((i + 0.5) / len(level) * width, float(y))
    _draw_edges(axis, circuit, position, edge_values)
    for node, xy in position.items():
        text = _node_text(circuit, node)
        if node_notes and node in node_notes:
            text += "\n" + node_notes[node]
        frame = None if node_colors is None else node_colors.get(node, "faded")
        _draw_node(axis, node, xy, text, [(images[i], box) for i, box in thumbs[node]], frame)
    axis.set_yticks(range(len(levels)), [*circuit.layers, "target"])
    axis.set_xticks([])
    axis.set_xlim(-0.2, width + 0.2)
    axis.set_ylim(-0.6, len(levels) - 0.4)
    for side in ("top", "right", "bottom"):
        axis.spines[side].set_visible(False)
