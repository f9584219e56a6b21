"""A layered drawing of a Circuit: edge width by weight, exemplar thumbnails per node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torch import Tensor

from .._data import Data, examples_at
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
    its top exemplar crops. The figure is created without pyplot, so no
    window opens.

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
    """
    if isinstance(thumbnails, bool) or not isinstance(thumbnails, int) or thumbnails < 0:
        raise ValueError(f"thumbnails must be an int >= 0, got {thumbnails!r}")
    levels = [circuit.node_ids(layer) for layer in circuit.layers] + [[TARGET]]
    shown = {
        node: circuit.exemplars.get(node, [])[:thumbnails] if data is not None else []
        for level in levels
        for node in level
    }
    wanted = sorted({index for items in shown.values() for index, _ in items})
    images = dict(zip(wanted, examples_at(data, wanted), strict=True)) if wanted else {}
    width = max(len(level) for level in levels)
    figure = Figure(figsize=figsize or (max(6.0, 2.2 * width), 2.0 * len(levels)))
    axis = figure.add_subplot()
    position: dict[str, tuple[float, float]] = {}
    for y, level in enumerate(levels):
        for i, node in enumerate(level):
            position[node] = ((i + 0.5) / len(level) * width, float(y))
    largest = max((abs(w) for w in circuit.edges.values()), default=1.0) or 1.0
    for (lower, upper), weight in circuit.edges.items():
        (x0, y0), (x1, y1) = position[lower], position[upper]
        axis.plot(
            [x0, x1],
            [y0, y1],
            color="tab:red" if weight > 0 else "tab:blue",
            linewidth=0.5 + 6 * abs(weight) / largest,
            alpha=0.35 + 0.5 * abs(weight) / largest,
            zorder=1,
        )
    for node, (x, y) in position.items():
        if node == TARGET:
            text = f"class {circuit.target}" if isinstance(circuit.target, int) else "target"
        else:
            group = circuit.nodes[node]
            text = f"{node}\n{len(group)} neurons" + (f"\n{group.label}" if group.label else "")
        items = shown[node]
        for j, (index, box) in enumerate(items):
            image = OffsetImage(
                _thumbnail(images[index], box, node), zoom=22 / max(box[2], box[3]), cmap="gray_r"
            )
            offset = (j - (len(items) - 1) / 2) * 0.28
            axis.add_artist(AnnotationBbox(image, (x + offset, y + 0.18), frameon=False, zorder=3))
        axis.text(
            x,
            y - (0.12 if items else 0),
            text,
            ha="center",
            va="top" if items else "center",
            fontsize=8,
            zorder=4,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.6"},
        )
    axis.set_yticks(range(len(levels)), [*circuit.layers, "target"])
    axis.set_xticks([])
    axis.set_xlim(-0.2, width + 0.2)
    axis.set_ylim(-0.6, len(levels) - 0.4)
    for side in ("top", "right", "bottom"):
        axis.spines[side].set_visible(False)
    axis.set_title(title or repr(circuit), fontsize=9)
    figure.tight_layout()
    return figure
