"""What image debugging returns: one row per group, one result per image, a comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

from matplotlib.figure import Figure
from torch import Tensor

from ...groups import NeuronGroup
from .._ids import TARGET
from ..graph import Circuit
from .plot import Box, plot_comparison, plot_image_debug

__all__ = ["ClassComparison", "GroupDebug", "ImageDebug"]


@dataclass(frozen=True)
class GroupDebug:
    """How one image expresses one group of a circuit, and what the group carries.

    Attributes
    ----------
    node : str
        Node id in the circuit.
    group : NeuronGroup
        The group (with its label, if any).
    score : float
        Log-barrier expression score, the maximum over the image and its crops.
    image_score : float
        The score of the whole image.
    value_ratio : float
        The group's value relative to its typical value (maximum over crops).
    coverage : float
        Fraction of member neurons at ``threshold`` x typical or above (maximum over crops).
    active : bool
        ``score >= threshold``.
    crops : list of (box, score)
        The crops that express the group (score at the threshold or above),
        best first; boxes are (top, left, height, width) in the image.
    conductance : float
        Conductance of the target through the group (all paths), in target units.
    flow : float
        The part of the target's change that reaches it through this group
        along the circuit's edges, in target units.
    share : float
        ``flow`` as a fraction of the target's change ``T(image) - T(baseline)``.
        It can exceed 1 (or be negative) when neurons outside the circuit push
        the other way, so compare shares within a layer.
    contrast : float or None
        With ``versus``: the part of the margin (target minus the other
        class) carried through the group along the circuit's edges.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> from captum_groups.circuits import debug_image
    >>> row = debug_image(model, circuit, x[y == 3][0], n_steps=8).groups["relu3:0"]
    >>> row.node, row.group == circuit.nodes["relu3:0"], 0 <= row.coverage <= 1
    ('relu3:0', True, True)
    """

    node: str
    group: NeuronGroup
    score: float
    image_score: float
    value_ratio: float
    coverage: float
    active: bool
    crops: list[tuple[Box, float]] = field(repr=False)
    conductance: float
    flow: float
    share: float
    contrast: float | None


@dataclass(frozen=True)
class ImageDebug:
    """The result of :func:`debug_image`: every group of the circuit on one image.

    Attributes
    ----------
    circuit : Circuit
        The debugged circuit.
    image : Tensor
        The image (C, H, W).
    groups : dict of str to GroupDebug
        One entry per circuit node, in the circuit's node order.
    edge_flows : dict of (str, str) to float
        The target's change carried along each circuit edge on this image.
    edge_contrasts : dict of (str, str) to float or None
        With ``versus``: the margin carried along each edge.
    logits : Tensor
        The model output on the image.
    target_change : float
        ``T(image) - T(baseline)`` of the circuit's target.
    threshold : float
        The score at which a group counts as active.
    versus : int or None
        The second class of the contrast.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> from captum_groups.circuits import debug_image
    >>> debug = debug_image(model, circuit, x[y == 3][0], n_steps=8)
    >>> len(debug.top(2)), sorted(debug.groups) == sorted(circuit.nodes)
    (2, True)
    """

    circuit: Circuit
    image: Tensor = field(repr=False)
    groups: dict[str, GroupDebug] = field(repr=False)
    edge_flows: dict[tuple[str, str], float] = field(repr=False)
    edge_contrasts: dict[tuple[str, str], float] | None = field(repr=False)
    logits: Tensor = field(repr=False)
    target_change: float
    threshold: float
    versus: int | None

    @property
    def prediction(self) -> int:
        """The model's predicted class for the image."""
        return int(self.logits.argmax())

    @property
    def active(self) -> list[str]:
        """Ids of the active groups (score at the threshold or above)."""
        return [node for node, row in self.groups.items() if row.active]

    @property
    def active_path(self) -> dict[tuple[str, str], float]:
        """Edges whose lower end is active, whose upper end is active or the target, and
        that carry a positive flow: this image's path through the circuit."""
        return {
            (lower, upper): flow
            for (lower, upper), flow in self.edge_flows.items()
            if self.groups[lower].active
            and (upper == TARGET or self.groups[upper].active)
            and flow > 0
        }

    def top(
        self,
        n: int = 1,
        by: str | None = None,
        layer: str | None = None,
        active_only: bool = True,
    ) -> list[GroupDebug]:
        """The n groups that carry most, best first.

        Flows of different layers are not on one scale: a lower group can
        carry more than its upper groups' whole change when neurons outside
        the circuit push against it. Rank within a layer (``layer``) to
        compare like with like; NeurFlow masks groups of the circuit's top
        layer.

        Parameters
        ----------
        n : int
            How many.
        by : {"contrast", "flow", "conductance", "score"}, optional
            Ranking key; ``"contrast"`` when the debug has a ``versus`` class,
            else ``"flow"``.
        layer : str, optional
            Rank only the groups of this circuit layer.
        active_only : bool
            Rank only the active groups.
        """
        key = by or ("contrast" if self.versus is not None else "flow")
        if key not in ("contrast", "flow", "conductance", "score"):
            raise ValueError(f"by must be 'contrast', 'flow', 'conductance' or 'score', got {by!r}")
        if key == "contrast" and self.versus is None:
            raise ValueError("by='contrast' needs a debug made with versus=<class>")
        if layer is not None and layer not in self.circuit.layers:
            raise ValueError(f"layer {layer!r} is not a circuit layer {self.circuit.layers}")
        rows = [
            r
            for r in self.groups.values()
            if (r.active or not active_only) and (layer is None or r.group.layer == layer)
        ]
        return sorted(rows, key=lambda r: -getattr(r, key))[:n]

    def table(self) -> str:
        """A text table: one row per group, active groups marked."""
        head = f"{'node':12s} {'label':14s} {'score':>6s} {'image':>6s} {'value':>6s} "
        head += f"{'cover':>5s} {'share':>6s} {'flow':>7s}"
        head += f" {'contrast':>8s}" if self.versus is not None else ""
        lines = [head]
        for node, row in self.groups.items():
            line = (
                f"{node:12s} {(row.group.label or '')[:14]:14s} {row.score:6.2f} "
                f"{row.image_score:6.2f} {row.value_ratio:6.2f} {row.coverage:5.2f} "
                f"{row.share:6.1%} {row.flow:7.3f}"
            )
            line += f" {row.contrast:8.3f}" if row.contrast is not None else ""
            lines.append(line + ("  *" if row.active else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"ImageDebug: predicted {self.prediction}, circuit of {self.circuit.target!r}, "
            f"{len(self.active)} active groups (threshold {self.threshold})\n{self.table()}"
        )

    def plot(
        self, data: Tensor | None = None, max_groups: int = 4, crops_per_group: int = 3
    ) -> Figure:
        """The image with the crops that express each active group, and the circuit with
        this image's active path highlighted (see ``plot.plot_image_debug``)."""
        return plot_image_debug(self, data, max_groups, crops_per_group)


@dataclass(frozen=True)
class ClassComparison:
    """Why the model says class A and not class B: the groups that separate them.

    Attributes
    ----------
    first, second : ImageDebug
        The image debugged through the circuit of each class, each against
        the other class.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> from captum_groups.circuits import compare_classes
    >>> other = build_circuit(model, ["relu3"], 8, x, tau=4, k=10, n_groups=2, scales=(1.0,),
    ...                       n_steps=8, progress=False)
    >>> comparison = compare_classes(model, circuit, other, x[y == 3][0], n_steps=8)
    >>> comparison.first.circuit.target, comparison.second.circuit.target
    (3, 8)
    """

    first: ImageDebug
    second: ImageDebug

    @property
    def classes(self) -> tuple[int, int]:
        """The two classes (A, B)."""
        return self.first.circuit.target, self.second.circuit.target  # type: ignore[return-value]

    def separating(self, layer: str | None = None) -> list[tuple[str, GroupDebug, float]]:
        """Every group of both circuits (of one layer, if given) with its push toward A
        over B, in margin units, strongest first: ``("A" or "B", the group's row, push)``.

        A group of A's circuit pushes by the margin ``logit_A - logit_B`` it carries
        along its circuit's edges; a group of B's circuit by minus the margin
        ``logit_B - logit_A`` it carries along B's. Rank within a layer to compare
        like with like (see :meth:`ImageDebug.top`).
        """
        rows = [("A", row, row.contrast) for row in self.first.groups.values()]
        rows += [("B", row, -row.contrast) for row in self.second.groups.values()]
        if layer is not None:
            rows = [item for item in rows if item[1].group.layer == layer]
            if not rows:
                raise ValueError(f"neither circuit has a group in layer {layer!r}")
        return sorted(rows, key=lambda item: -abs(item[2]))

    def table(self, layer: str | None = None) -> str:
        """A text table of the separating groups (active ones starred)."""
        a, b = self.classes
        lines = [f"{'circuit':8s} {'node':12s} {'label':14s} {'score':>6s} {f'{a} over {b}':>10s}"]
        for which, row, push in self.separating(layer):
            lines.append(
                f"{(a if which == 'A' else b)!s:8s} {row.node:12s} "
                f"{(row.group.label or '')[:14]:14s} {row.score:6.2f} {push:10.3f}"
                + ("  *" if row.active else "")
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        a, b = self.classes
        logits = self.first.logits
        return (
            f"class {a} ({float(logits[a]):.2f}) over class {b} ({float(logits[b]):.2f}); "
            f"groups by their push toward {a}:\n{self.table()}"
        )

    def plot(self, n: int = 6, layer: str | None = None) -> Figure:
        """Bars of the n groups (of one layer, if given) that separate the classes most,
        and the image with the crops of the group pushing most toward each class (see
        ``plot.plot_comparison``)."""
        return plot_comparison(self, n, layer)
