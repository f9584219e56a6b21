"""The groups of one layer, in order (:class:`GroupSet`), its file format, and every form of
"some groups" read as a list."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

import numpy as np
from torch import Tensor, nn

from .._validation.schemas import GROUPSET, check, read_json
from .layers import Layer
from .neuron_group import NeuronGroup, common_call

GROUPSET_FORMAT = "captum-groups groupset"
"""The ``format`` field of a GroupSet file (:meth:`GroupSet.to_json`)."""


class GroupSet(Sequence[NeuronGroup]):
    """The groups of one layer, ordered; they may overlap or partition the layer.

    Parameters
    ----------
    groups : iterable of NeuronGroup
        At least one group; all must refer to the same layer, and to the same
        run of it (``call``).

    Examples
    --------
    >>> gs = GroupSet.from_labels("conv2", [0, 0, 1, 2, 1])
    >>> len(gs), gs[1].indices
    (3, (2, 4))
    >>> gs.layer
    'conv2'
    """

    __slots__ = ("_groups",)

    def __init__(self, groups: Iterable[NeuronGroup]) -> None:
        items = tuple(groups)
        if not items:
            raise ValueError("groups must hold at least one NeuronGroup")
        for group in items:
            if not isinstance(group, NeuronGroup):
                raise TypeError(f"groups must hold NeuronGroup objects, got {group!r}")
        first = items[0].layer
        for group in items[1:]:
            if not _same_layer(group.layer, first):
                raise ValueError(
                    f"groups must all belong to one layer; got {first!r} and {group.layer!r}"
                )
        common_call(items, remedy="make one GroupSet per call")
        object.__setattr__(self, "_groups", items)

    @classmethod
    def from_labels(
        cls,
        layer: Layer,
        labels: Sequence[int] | np.ndarray | Tensor,
        *,
        names: Sequence[str] | None = None,
        **group_kwargs: object,
    ) -> GroupSet:
        """Build a partition from one cluster label per neuron.

        Neuron ``i`` joins group ``labels[i]``; labels are sorted, and negative
        labels (noise, as in DBSCAN) leave the neuron out.

        Examples
        --------
        >>> GroupSet.from_labels("fc1", [1, 0, 1])
        GroupSet(layer='fc1', groups=[[1], [0, 2]])
        """
        labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError("labels must be a non-empty 1-d sequence, one label per neuron")
        values = [v for v in np.unique(labels) if v >= 0]
        if names is not None and len(names) != len(values):
            raise ValueError(f"names must have one entry per group ({len(values)})")
        groups = [
            NeuronGroup(
                layer,
                np.flatnonzero(labels == v),
                name=names[i] if names is not None else f"g{i}",
                **group_kwargs,  # type: ignore[arg-type]
            )
            for i, v in enumerate(values)
        ]
        return cls(groups)

    def to_json(self, indent: int | None = 1) -> str:
        """The groups as a GroupSet file; :meth:`from_json` reads it back (no pickle).

        The file is a JSON object ``{"format": "captum-groups groupset",
        "version": 1, "layer": ..., "groups": [...]}`` with one dict per group
        (the keys of :meth:`NeuronGroup.to_dict`).

        Examples
        --------
        >>> groups = GroupSet.from_labels("relu3", [0, 1, 0])
        >>> GroupSet.from_json(groups.to_json()) == groups
        True
        """
        if not isinstance(self.layer, str):
            raise TypeError("the groups must name their layer (a dotted string) to be exported")
        return json.dumps(
            {
                "format": GROUPSET_FORMAT,
                "version": 1,
                "layer": self.layer,
                "groups": [group.to_dict() for group in self._groups],
            },
            indent=indent,
        )

    @classmethod
    def from_json(cls, text: str) -> GroupSet:
        """Read a GroupSet file written by :meth:`to_json`, strictly: it must match the
        declared schema (``GROUPSET``), a repeated
        key or a NaN is refused, and a problem is reported with its field's JSON path.

        A group dict may leave out ``layer``; it then belongs to the file's layer.
        """
        return cls.from_data(read_json(text, "GroupSet file"))

    @classmethod
    def from_data(cls, data: object) -> GroupSet:
        """A GroupSet from a parsed GroupSet file (see :meth:`from_json`)."""
        check(data, GROUPSET, "GroupSet file")
        layer = data.get("layer")  # type: ignore[union-attr]
        return cls(
            NeuronGroup.from_dict({"layer": layer, **group})
            for group in data["groups"]  # type: ignore[index]
        )

    @property
    def layer(self) -> Layer:
        """The layer all groups belong to."""
        return self._groups[0].layer

    @property
    def call(self) -> int | None:
        """The run of the layer all groups read (see :class:`NeuronGroup`), or None."""
        return self._groups[0].call

    @overload
    def __getitem__(self, index: int) -> NeuronGroup: ...

    @overload
    def __getitem__(self, index: slice) -> GroupSet: ...

    def __getitem__(self, index: int | slice) -> NeuronGroup | GroupSet:
        if isinstance(index, slice):
            return GroupSet(self._groups[index])
        return self._groups[index]

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[NeuronGroup]:
        return iter(self._groups)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroupSet):
            return NotImplemented
        return self._groups == other._groups

    def __hash__(self) -> int:
        return hash(self._groups)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("GroupSet is immutable")

    def __reduce__(self) -> tuple:
        return (GroupSet, (self._groups,))

    def __repr__(self) -> str:
        layer = self.layer if isinstance(self.layer, str) else f"<{type(self.layer).__name__}>"
        shown = ", ".join(str(list(g.indices)) for g in self._groups[:8])
        if len(self) > 8:
            shown += f", ... ({len(self)} groups)"
        return f"GroupSet(layer={layer!r}, groups=[{shown}])"


GroupsLike = NeuronGroup | GroupSet | Sequence[NeuronGroup]
"""What a ``groups`` parameter takes: one group, a GroupSet, or a sequence of groups."""


def as_group_list(groups: GroupsLike, parameter: str = "groups") -> list[NeuronGroup]:
    """The groups a ``groups`` argument names, as a non-empty list.

    The one reading of "groups" in the package: one :class:`NeuronGroup`, a
    :class:`GroupSet`, or any sequence of groups. Anything else, or an element
    that is not a group, is a ``TypeError``; no group at all is a ``ValueError``.
    Both name ``parameter``.

    Examples
    --------
    >>> as_group_list(NeuronGroup("fc1", [0, 1]))
    [NeuronGroup('fc1', [0, 1])]
    >>> len(as_group_list(GroupSet.from_labels("fc1", [0, 1, 1])))
    2
    >>> as_group_list([], "lower_groups")
    Traceback (most recent call last):
    ...
    ValueError: lower_groups is empty; give at least one NeuronGroup
    """
    if isinstance(groups, NeuronGroup):
        return [groups]
    if not isinstance(groups, Iterable) or isinstance(groups, (str, bytes, Tensor, Mapping)):
        raise TypeError(
            f"{parameter} must be a NeuronGroup, a GroupSet or a sequence of NeuronGroups, "
            f"got {type(groups).__name__}"
        )
    items = list(groups)
    for item in items:
        if not isinstance(item, NeuronGroup):
            raise TypeError(f"{parameter} must hold NeuronGroup objects, got {item!r}")
    if not items:
        raise ValueError(f"{parameter} is empty; give at least one NeuronGroup")
    return items


def _same_layer(a: Layer, b: Layer) -> bool:
    return a is b if isinstance(a, nn.Module) or isinstance(b, nn.Module) else a == b
