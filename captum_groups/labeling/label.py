"""label_groups: name every group of a circuit (or a list of groups) with a labeler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn
from tqdm import tqdm

from ..circuits import Circuit
from ..data import Data, check_reiterable
from ..groups import GroupsLike, NeuronGroup, as_group_list
from .base import GroupEvidence, GroupLabel, Labeler, LabelerError, checked_label
from .evidence import gather_evidence

__all__ = ["Labeling", "label_groups"]

LabelerLike = Labeler | Callable[[GroupEvidence], object]


@dataclass(frozen=True)
class Labeling:
    """The result of :func:`label_groups`.

    Attributes
    ----------
    labels : dict of str to GroupLabel
        Each group's answer, keyed by node id (circuits) or by name.
    groups : list of NeuronGroup
        The groups with their new labels, in the order given.
    circuit : Circuit or None
        The labelled circuit (labels in its nodes, scores and evidence in
        ``label_details``), when a circuit was given.
    labeler : str
        The labeler's name.

    Examples
    --------
    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.labeling import EnrichmentLabeler
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> groups = GroupSet.from_labels("relu3", [i % 2 for i in range(64)], names=["a", "b"])
    >>> labeling = label_groups(groups, EnrichmentLabeler(y), model, x, k=20, progress=False)
    >>> sorted(labeling.labels), labeling.labeler, labeling.circuit is None
    (['a', 'b'], 'EnrichmentLabeler', True)
    """

    labels: dict[str, GroupLabel]
    groups: list[NeuronGroup] = field(repr=False)
    circuit: Circuit | None = field(repr=False)
    labeler: str

    def table(self) -> str:
        """A text table: group, layer, size, label, score."""
        lines = [f"{'group':12s} {'layer':10s} {'size':>4s}  {'label':16s} {'score':>6s}"]
        for (key, answer), group in zip(self.labels.items(), self.groups, strict=True):
            layer = group.layer if isinstance(group.layer, str) else type(group.layer).__name__
            lines.append(
                f"{key:12s} {layer:10s} {len(group):4d}  {str(answer.label)[:16]:16s} "
                f"{answer.score:6.3f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"Labeling by {self.labeler}:\n{self.table()}"


def _keyed_groups(circuit_or_groups: object) -> list[tuple[str, NeuronGroup]]:
    if isinstance(circuit_or_groups, Circuit):
        return list(circuit_or_groups.nodes.items())
    if isinstance(circuit_or_groups, (str, bytes)) or not isinstance(
        circuit_or_groups, (NeuronGroup, Sequence)
    ):
        raise TypeError(
            "circuit_or_groups must be a Circuit, a NeuronGroup, a GroupSet or a list of groups, "
            f"got {type(circuit_or_groups).__name__}"
        )
    groups = as_group_list(circuit_or_groups, "circuit_or_groups")
    items = [(group.name or f"group {i}", group) for i, group in enumerate(groups)]
    keys = [key for key, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"groups must have distinct names to be labelled, got {keys}")
    return items


def _ask(labeler: LabelerLike, evidence: GroupEvidence, name: str) -> GroupLabel:
    ask = labeler.label if hasattr(labeler, "label") else labeler
    # a labeler is user code: any failure is reported with the group it failed on
    try:
        answer = ask(evidence)
    except Exception as error:
        raise LabelerError(
            f"labeler {name} failed on group {evidence.name!r} ({evidence.group!r}): "
            f"{type(error).__name__}: {error}"
        ) from error
    return checked_label(answer, evidence, name)


def label_groups(
    circuit_or_groups: Circuit | GroupsLike,
    labeler: LabelerLike,
    model: nn.Module,
    data: Data,
    k: int | None = 50,
    scales: Sequence[float] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> Labeling:
    """Name the concept of every group with a labeler.

    Each group's evidence (:class:`GroupEvidence`: its top exemplars, the
    crops, the member activations and the group's activation maps) goes to
    the labeler, whose answer (:class:`GroupLabel`: label, score, evidence)
    is checked and lands in ``NeuronGroup.label``; for a circuit, in a new
    circuit whose ``label_details`` keep the score and the evidence (and its
    JSON, and its plot).

    Parameters
    ----------
    circuit_or_groups : Circuit, GroupSet, list of NeuronGroup or NeuronGroup
        What to label.
    labeler : Labeler or callable
        An object with ``label(evidence)``, or a callable taking the
        evidence; it returns a GroupLabel or a ``(label, score, evidence)``
        tuple. Shipped: :class:`EnrichmentLabeler`, :class:`MaskLabeler`,
        :class:`EmbeddingLabeler`.
    model : nn.Module
        The model.
    data : Tensor, Dataset or DataLoader
        The examples to take exemplars from (indexed like the labeler's
        labels or masks).
    k : int or None
        Exemplars mined per group (NeurFlow's concept size is 50). None uses
        the exemplars a circuit stores (NeurFlow shows a vision-language
        model its five representative crops).
    scales : sequence of float, optional
        Crop sides to mine (e.g. ``NEURFLOW_SCALES``); a circuit's own scales
        by default, whole images for groups.
    batch_size : int
        Examples per forward pass.
    progress : bool
        Show progress bars.

    Returns
    -------
    Labeling

    Raises
    ------
    LabelerError
        When the labeler raises, or answers something that is not a label
        (the message names the group).

    Examples
    --------
    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.labeling import EnrichmentLabeler
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> groups = GroupSet.from_labels("relu3", [i % 4 for i in range(64)], names=list("abcd"))
    >>> labeling = label_groups(groups, EnrichmentLabeler(y), model, x, k=20, progress=False)
    >>> [g.label == labeling.labels[g.name].label for g in labeling.groups]
    [True, True, True, True]
    """
    items = _keyed_groups(circuit_or_groups)
    circuit = circuit_or_groups if isinstance(circuit_or_groups, Circuit) else None
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be a positive int or None, got {k!r}")
    if k is None and circuit is None:
        raise ValueError("k=None uses a circuit's stored exemplars; give k to label groups")
    if not (isinstance(labeler, Labeler) or callable(getattr(labeler, "label", labeler))):
        raise TypeError(f"labeler must be a Labeler or a callable, got {type(labeler).__name__}")
    name = (
        labeler.name
        if isinstance(labeler, Labeler)
        else getattr(labeler, "__name__", type(labeler).__name__)
    )
    check_reiterable(data)
    # mine at the circuit's own crop scales, so the exemplars are the kind the circuit kept
    if scales is None and circuit is not None:
        scales = circuit.params.get("scales")
    evidence = gather_evidence(
        model,
        items,
        data,
        k,
        scales,
        stored=circuit.exemplars if circuit is not None else None,
        batch_size=batch_size,
        progress=progress,
    )
    labels = {
        key: _ask(labeler, evidence[key], name)
        for key, _ in tqdm(items, desc="labelling groups", disable=not progress, leave=False)
    }
    # groups are immutable: labelled copies; the user's groups and circuit stay unlabelled
    groups = [group.replace(label=labels[key].label) for key, group in items]
    if circuit is not None:
        circuit = circuit.relabel(
            {key: answer.label for key, answer in labels.items()},
            {
                key: {"score": answer.score, "labeler": name, "evidence": answer.evidence}
                for key, answer in labels.items()
            },
        )
    return Labeling(labels, groups, circuit, name)
