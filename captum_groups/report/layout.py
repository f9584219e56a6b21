"""Where the circuit's nodes and edges go in the report's SVG: a layered drawing.

The target sits on top and the lowest circuit layer at the bottom, one row
per layer. Nodes of a row are ordered by the weighted mean position of the
upper nodes they feed (one barycentre sweep from the top), which removes most
edge crossings. Edges are cubic curves from the top of the lower node to the
bottom of the upper one; their width grows with ``|weight|`` and their class
says the sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..circuits import TARGET, Circuit

__all__ = ["EdgeShape", "GraphLayout", "NodeShape", "layered_layout"]

NODE_WIDTH = 128
NODE_HEIGHT = 134
IMAGE_SIDE = 72
COLUMN_GAP = 40
ROW_GAP = 96
LEFT_MARGIN = 120
MARGIN = 24
MIN_EDGE_WIDTH = 1.0
MAX_EDGE_WIDTH = 9.0


@dataclass(frozen=True)
class NodeShape:
    """One node of the drawing: its box (top-left corner), caption and picture."""

    node: str
    key: str
    x: float
    y: float
    lines: tuple[str, ...]
    image: str | None
    is_target: bool

    @property
    def centre_x(self) -> float:
        return self.x + NODE_WIDTH / 2


@dataclass(frozen=True)
class EdgeShape:
    """One edge of the drawing: an SVG path from the lower node up to the upper node."""

    lower: str
    upper: str
    weight: float
    width: float
    path: str

    @property
    def sign(self) -> str:
        return "positive" if self.weight >= 0 else "negative"


@dataclass(frozen=True)
class GraphLayout:
    """The whole drawing: canvas size, nodes, edges, and one label per row.

    Examples
    --------
    >>> from captum_groups import Circuit, NeuronGroup
    >>> a, b = NeuronGroup("conv2", [0, 1], name="a"), NeuronGroup("conv2", [2], name="b")
    >>> edges = {("a", "target"): 0.7, ("b", "target"): -0.2}
    >>> drawing = layered_layout(Circuit(3, ["conv2"], {"a": a, "b": b}, edges))
    >>> [row for row, _ in drawing.rows], len(drawing.nodes), len(drawing.edges)
    (['target', 'conv2'], 3, 2)
    """

    width: float
    height: float
    nodes: tuple[NodeShape, ...]
    edges: tuple[EdgeShape, ...]
    rows: tuple[tuple[str, float], ...]
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT
    image_side: int = IMAGE_SIDE


def _ordered_levels(circuit: Circuit) -> list[list[str]]:
    """Node ids per row, top (the target) first, each row ordered by its barycentre."""
    levels = [[TARGET]] + [circuit.node_ids(layer) for layer in reversed(circuit.layers)]
    position = {TARGET: 0.0}
    for row in levels[1:]:
        # Each node sits under the weighted mean position of the nodes it feeds (the
        # barycentre heuristic of layered drawing); a node that feeds nothing drawn, or only
        # through edges of weight 0, keeps its own place in the row. The keys are computed
        # before sorting: list.sort empties the list while it runs, so a key may not read it.
        keys = {node: _barycentre(circuit, node, position, float(i)) for i, node in enumerate(row)}
        row.sort(key=keys.__getitem__)
        position.update((node, float(i)) for i, node in enumerate(row))
    return levels


def _barycentre(circuit: Circuit, node: str, position: dict[str, float], own: float) -> float:
    """The |weight|-weighted mean position of the placed nodes ``node`` feeds, or ``own``."""
    weights = {u: abs(w) for u, w in circuit.out_edges(node).items() if u in position}
    total = sum(weights.values())
    if total == 0:
        return own
    return sum(position[u] * w for u, w in weights.items()) / total


def layered_layout(
    circuit: Circuit,
    images: Mapping[str, str] | None = None,
    captions: Mapping[str, Sequence[str]] | None = None,
) -> GraphLayout:
    """Lay the circuit out in rows, the target on top.

    Parameters
    ----------
    circuit : Circuit
        The circuit.
    images : mapping of node id to str, optional
        A picture per node (an image URL, e.g. a data URI).
    captions : mapping of node id to sequence of str, optional
        Text lines under each node; its id by default.

    Returns
    -------
    GraphLayout

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> a, b = NeuronGroup("conv2", [0, 1], name="a"), NeuronGroup("conv2", [2], name="b")
    >>> edges = {("a", "target"): 0.7, ("b", "target"): -0.2}
    >>> drawing = layered_layout(Circuit(3, ["conv2"], {"a": a, "b": b}, edges))
    >>> [n.node for n in drawing.nodes], [e.sign for e in drawing.edges]
    (['target', 'a', 'b'], ['positive', 'negative'])
    """
    images, captions = images or {}, captions or {}
    levels = _ordered_levels(circuit)
    columns = max(len(row) for row in levels)
    inner_width = columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP
    width = LEFT_MARGIN + inner_width + MARGIN
    height = 2 * MARGIN + len(levels) * NODE_HEIGHT + (len(levels) - 1) * ROW_GAP
    nodes: list[NodeShape] = []
    rows: list[tuple[str, float]] = []
    names = ["target", *reversed(circuit.layers)]
    for level, (row, name) in enumerate(zip(levels, names, strict=True)):
        y = MARGIN + level * (NODE_HEIGHT + ROW_GAP)
        rows.append((name, y + NODE_HEIGHT / 2))
        row_width = len(row) * NODE_WIDTH + (len(row) - 1) * COLUMN_GAP
        start = LEFT_MARGIN + (inner_width - row_width) / 2
        for i, node in enumerate(row):
            nodes.append(
                NodeShape(
                    node=node,
                    key=f"node-{len(nodes)}",
                    x=start + i * (NODE_WIDTH + COLUMN_GAP),
                    y=y,
                    lines=tuple(captions.get(node, (node,))),
                    image=images.get(node),
                    is_target=node == TARGET,
                )
            )
    shape = {n.node: n for n in nodes}
    largest = max((abs(w) for w in circuit.edges.values()), default=0.0) or 1.0
    edges = []
    for (lower, upper), weight in circuit.edges.items():
        x0, y0 = shape[lower].centre_x, shape[lower].y
        x1, y1 = shape[upper].centre_x, shape[upper].y + NODE_HEIGHT
        middle = (y0 + y1) / 2
        path = f"M{x0:.1f},{y0:.1f} C{x0:.1f},{middle:.1f} {x1:.1f},{middle:.1f} {x1:.1f},{y1:.1f}"
        thickness = MIN_EDGE_WIDTH + (MAX_EDGE_WIDTH - MIN_EDGE_WIDTH) * abs(weight) / largest
        edges.append(EdgeShape(lower, upper, weight, round(thickness, 2), path))
    return GraphLayout(width, height, tuple(nodes), tuple(edges), tuple(rows))
