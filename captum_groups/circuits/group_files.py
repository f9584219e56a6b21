"""Groups read from a JSON file in any of the package's three forms: a list of
``NeuronGroup.to_dict`` records, a ``GroupSet.to_json`` file, or a circuit's
``Circuit.to_json`` file (its nodes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._validation.checks import ParameterError
from .._validation.schemas import GROUP_LIST, check, read_json
from ..groups import GROUPSET_FORMAT, GroupSet, NeuronGroup
from .graph import Circuit

__all__ = ["read_groups"]


def read_groups(path: str | Path, names: Sequence[str] | None = None) -> list[NeuronGroup]:
    """The groups of a JSON file, all of them or those named; each named by its id.

    Parameters
    ----------
    path : str or Path
        A JSON file: a list of group records, a GroupSet file or a circuit file.
        It is read as JSON, never unpickled.
    names : sequence of str, optional
        The groups to keep, by name: a group's ``name`` (``group<i>`` for an unnamed
        one at position ``i``) or a circuit's node id.

    Returns
    -------
    list of NeuronGroup
        In file order, or in the order of ``names``; each group's ``name`` is its id.

    Raises
    ------
    ParameterError
        ``groups`` for a file that cannot be read or holds no groups, ``nodes`` for a
        name the file does not hold.

    Examples
    --------
    >>> import json, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "groups.json"
    >>> _ = path.write_text(json.dumps([NeuronGroup("relu3", [0, 5]).to_dict()]))
    >>> read_groups(path)
    [NeuronGroup('relu3', [0, 5], name='group0')]
    >>> read_groups(path, ["edges"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: ['edges'] not in .../groups.json; it has ['group0']
    """
    try:
        data = read_json(Path(path).read_bytes(), f"{path}")
    except OSError as error:
        raise ParameterError("groups", f"cannot read {path} as JSON ({error})") from None
    except ParameterError as error:
        raise ParameterError("groups", f"cannot read {error}") from None
    try:
        groups, ids = _groups_and_ids(data, str(path))
    except (ValueError, TypeError, KeyError) as error:
        raise ParameterError("groups", f"{path}: {error}") from None
    if not groups:
        raise ParameterError("groups", f"{path} holds no groups")
    named = [g.replace(name=i) for g, i in zip(groups, ids, strict=True)]
    if not names:
        return named
    unknown = [n for n in names if n not in ids]
    if unknown:
        raise ParameterError("nodes", f"{unknown} not in {path}; it has {ids}")
    return [named[ids.index(n)] for n in names]


def _groups_and_ids(data: object, where: str) -> tuple[list[NeuronGroup], list[str]]:
    """The groups of a file's JSON value and their ids, by the value's form."""
    if isinstance(data, list):
        check(data, GROUP_LIST, where)
        groups = [NeuronGroup.from_dict(item) for item in data]
        return groups, [g.name or f"group{i}" for i, g in enumerate(groups)]
    if isinstance(data, dict) and data.get("format") == GROUPSET_FORMAT:
        groups = list(GroupSet.from_data(data))
        return groups, [g.name or f"group{i}" for i, g in enumerate(groups)]
    if isinstance(data, dict) and data.get("format") == "captum-groups circuit":
        nodes = Circuit.from_dict(data).nodes
        return list(nodes.values()), list(nodes)
    raise ValueError(
        "expected a list of group dicts, a GroupSet file or a circuit JSON "
        f"(a 'format' of {GROUPSET_FORMAT!r} or 'captum-groups circuit')"
    )
