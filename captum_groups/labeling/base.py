"""What a labeler sees, what it returns, and the check every answer passes.

A labeler names the concept of one neuron group from the group's
*evidence*: its top exemplars (data-set indices, crop boxes, the crops as
the model saw them), the member neurons' activations on them, and the
group's spatial activation map on each. It answers a :class:`GroupLabel`:
a label (or None when it finds none), a score, and JSON evidence. Any
object with a ``label(evidence)`` method, or any callable taking the
evidence, is a labeler; subclass :class:`Labeler` to say so.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from ..groups import NeuronGroup

__all__ = ["GroupEvidence", "GroupLabel", "Labeler", "LabelerError", "checked_label"]


@dataclass(frozen=True)
class GroupEvidence:
    """Everything a labeler may use about one group.

    Attributes
    ----------
    name : str
        The group's key: its circuit node id, its name, or ``"group i"``.
    group : NeuronGroup
        The group.
    indices : Tensor
        (K,) data-set index of each exemplar's image.
    boxes : Tensor
        (K, 4) crop box (top, left, height, width) of each exemplar in its image.
    crops : Tensor
        (K, C, H, W) the exemplar crops, resized to the input size as the model saw them.
    values : Tensor
        (K,) the group's value on each exemplar, highest first.
    activations : Tensor
        (K, len(group)) each member neuron's activation on each exemplar.
    maps : Tensor or None
        (K, h, w) the group's activation map on each exemplar crop, at the
        layer's resolution (the weighted sum of its channels); None for layers
        without spatial axes.

    Examples
    --------
    A labeler's ``label`` receives one per group:

    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.labeling import Labeler, GroupLabel, label_groups
    >>> class Brightest(Labeler):
    ...     name = "brightest"
    ...     def label(self, evidence):
    ...         return GroupLabel(f"{len(evidence.indices)} crops", float(evidence.values.mean()))
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> groups = GroupSet.from_labels("relu3", [i % 2 for i in range(64)], names=["a", "b"])
    >>> label_groups(groups, Brightest(), model, x, k=5, progress=False).labels["a"].label
    '5 crops'
    """

    name: str
    group: NeuronGroup
    indices: Tensor = field(repr=False)
    boxes: Tensor = field(repr=False)
    crops: Tensor = field(repr=False)
    values: Tensor = field(repr=False)
    activations: Tensor = field(repr=False)
    maps: Tensor | None = field(repr=False)


@dataclass(frozen=True)
class GroupLabel:
    """A labeler's answer for one group.

    Attributes
    ----------
    label : str or None
        The concept's name, or None when the labeler finds none.
    score : float
        How well the label fits (its meaning depends on the labeler: a
        precision, an IoU, a probability).
    evidence : dict
        What the answer rests on, as JSON values (stored in the circuit).

    Examples
    --------
    >>> answer = GroupLabel("loops", 0.8, {"enrichment": 4.2})
    >>> answer.label, answer.score, answer.evidence["enrichment"]
    ('loops', 0.8, 4.2)
    """

    label: str | None
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)


class LabelerError(RuntimeError):
    """A labeler failed on a group, or answered something that is not a label.

    Examples
    --------
    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.labeling import Labeler, label_groups
    >>> class Broken(Labeler):
    ...     name = "broken"
    ...     def label(self, evidence):
    ...         return 42  # not a GroupLabel
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> groups = GroupSet.from_labels("relu3", [i % 2 for i in range(64)], names=["a", "b"])
    >>> label_groups(groups, Broken(), model, x, k=5, progress=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.labeling.base.LabelerError: ...
    """


class Labeler(ABC):
    """Base class of labelers: implement :meth:`~captum_groups.labeling.Labeler.label`.

    Examples
    --------
    >>> class Constant(Labeler):
    ...     def label(self, evidence):
    ...         return GroupLabel("anything", 1.0)
    >>> Constant().name
    'Constant'
    """

    @abstractmethod
    def label(self, evidence: GroupEvidence) -> GroupLabel:
        """Name the concept of one group from its evidence."""

    @property
    def name(self) -> str:
        """How the labeler is recorded in a circuit's label details."""
        return type(self).__name__


def _plain(value: Any, where: str) -> Any:
    """The value as plain JSON types (numpy and torch scalars and arrays included)."""
    if isinstance(value, (Tensor, np.ndarray)):
        return _plain(value.tolist(), where)
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if isinstance(value, Mapping):
        return {str(key): _plain(item, where) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} holds a non-finite number")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where} holds a {type(value).__name__}, which is not a JSON value")


def checked_label(answer: Any, evidence: GroupEvidence, labeler: str) -> GroupLabel:
    """A labeler's answer as a valid :class:`GroupLabel`, or a :class:`LabelerError`
    that names the group.

    A ``(label, score)`` or ``(label, score, evidence)`` tuple is accepted too.
    """
    where = f"labeler {labeler} on group {evidence.name!r} ({evidence.group!r})"
    if isinstance(answer, tuple) and len(answer) in (2, 3):
        answer = GroupLabel(*answer)
    if not isinstance(answer, GroupLabel):
        raise LabelerError(
            f"{where} returned {type(answer).__name__} {answer!r:.80}; expected a GroupLabel "
            f"or a (label, score, evidence) tuple"
        )
    label = answer.label
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise LabelerError(
            f"{where} returned the label {label!r}; expected a non-empty str or None"
        )
    score = answer.score
    if isinstance(score, (np.generic, Tensor)) and getattr(score, "ndim", 0) == 0:
        score = score.item()
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise LabelerError(f"{where} returned the score {score!r}; expected a finite number")
    if not isinstance(answer.evidence, Mapping):
        raise LabelerError(f"{where} returned evidence of type {type(answer.evidence).__name__}")
    try:
        plain = _plain(answer.evidence, "its evidence")
        json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise LabelerError(f"{where}: {error}") from None
    return GroupLabel(None if label is None else label.strip(), float(score), plain)
