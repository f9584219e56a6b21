"""Settings objects: each setting defined once, with its default, its check and its doc.

A settings class is a frozen dataclass deriving from :class:`Settings` whose
fields are made with :func:`setting`. From that one declaration come:

- validation on construction (:meth:`Settings.__post_init__`), raising a
  :class:`~captum_groups.ParameterError` that names the field;
- the ``Parameters`` section of the class docstring (:func:`documented`);
- ``replace``, ``to_dict`` / ``from_dict`` (plain JSON values), and
  :meth:`Settings.merged`, which turns a function's keyword arguments into a
  settings object (so ``build_circuit(..., tau=4)`` and
  ``build_circuit(..., settings=CircuitSettings(tau=4))`` are one path);
- the command line's options (:mod:`captum_groups.cli.options`).

Settings objects pickle (they hold plain values), so a driver can ship them
to worker processes whole.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .._validation.checks import Constraint, ParameterError

__all__ = ["FrozenMapping", "Settings", "documented", "setting"]

S = TypeVar("S", bound="Settings")


class FrozenMapping(Mapping):
    """A mapping that cannot change and hashes, for a mapping held by frozen settings (a
    dict there could be changed after validation, and would make the settings unhashable).
    It equals a dict with the same items and prints like one.

    Examples
    --------
    >>> frozen = FrozenMapping({"relu3": 2})
    >>> frozen == {"relu3": 2}, hash(frozen) == hash(FrozenMapping({"relu3": 2})), frozen
    (True, True, {'relu3': 2})
    >>> frozen["relu3"] = 0
    Traceback (most recent call last):
    ...
    TypeError: 'FrozenMapping' object does not support item assignment
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[Any, Any]) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key: Any) -> Any:
        return self._items[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} cannot change")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self._items,))

    def __repr__(self) -> str:
        return repr(self._items)


def setting(
    default: Any,
    constraint: Constraint,
    doc: str,
    *,
    type_name: str,
    cli: Mapping[str, Any] | None = None,
) -> Any:
    """A settings field: its default, what it accepts, and its documentation.

    Parameters
    ----------
    default : object
        The default value (immutable: a tuple, not a list).
    constraint : Constraint
        What the field accepts (checked on construction).
    doc : str
        One or two sentences: the docstring's entry and the option's ``--help``.
    type_name : str
        The type as the docstring shows it (``"int"``, ``"int or None"``).
    cli : mapping, optional
        How the command line shows it: ``{"type": int}``, ``{"nargs": "+"}``,
        ``{"metavar": "PX"}``; ``{"skip": True}`` keeps it off the command line;
        ``{"defaults": {"circuit": (8, "why")}}`` gives a command its own default, and
        why (the one place a command's default differs from the API's).
    """
    metadata = {"constraint": constraint, "doc": doc, "type_name": type_name, "cli": cli or {}}
    return dataclasses.field(default=default, metadata=metadata)


def documented(cls: type[S]) -> type[S]:
    """Complete the class docstring with a ``Parameters`` section made from its fields."""
    lines = ["", "    Parameters", "    ----------"]
    for item in dataclasses.fields(cls):
        lines.append(f"    {item.name} : {item.metadata['type_name']}")
        text = f"{item.metadata['doc']} Default: ``{item.default!r}``."
        lines.append(textwrap.fill(text, 88, initial_indent=" " * 8, subsequent_indent=" " * 8))
    doc = (cls.__doc__ or "").rstrip()
    head, marker, tail = doc.partition("\n    Examples\n")
    cls.__doc__ = head + "\n" + "\n".join(lines) + "\n" + (marker + tail if marker else "")
    return cls


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the settings classes: validation, copies with changes, plain-value records."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            item.metadata["constraint"].check(getattr(self, item.name), item.name)
        self._check_together()

    def _check_together(self) -> None:
        """Checks that involve several fields (none by default)."""

    @classmethod
    def _refuse_unknown(cls, names: Iterable[str], saying: str) -> None:
        """Refuse the first name that is no field: ``saying`` (with ``{name}``) and the fields."""
        known = {item.name for item in dataclasses.fields(cls)}
        for name in names:
            if name not in known:
                message = saying.format(name=repr(name))
                raise ParameterError(name, f"{message}; its fields are {sorted(known)}")

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed (validated like a new object)."""
        self._refuse_unknown(changes, f"{type(self).__name__} has no setting {{name}}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def merged(cls: type[S], settings: S | None, options: Mapping[str, Any], caller: str) -> S:
        """``settings`` (or the defaults) with a function's keyword options applied.

        Each option must be a field name; an unknown one is refused with the
        list of known ones, as Python refuses an unexpected keyword.
        """
        if settings is not None and not isinstance(settings, cls):
            raise ParameterError(
                "settings",
                f"settings must be a {cls.__name__}, got {type(settings).__name__}",
            )
        cls._refuse_unknown(
            options, f"{caller}() got an unexpected keyword argument {{name}} ({cls.__name__})"
        )
        base = settings if settings is not None else cls()
        return base.replace(**options) if options else base

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (tuples as lists, mappings as dicts)."""
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any], field: str = "settings") -> S:
        """Settings from :meth:`to_dict`'s output; unknown keys are refused by name."""
        if not isinstance(data, Mapping):
            raise ParameterError(field, f"{field} must be an object of settings, got {data!r}")
        known = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ParameterError(
                f"{field}.{unknown[0]}",
                f"{field} holds unknown settings {unknown}; {cls.__name__} has {sorted(known)}",
            )
        values = {name: _from_plain(known[name], value) for name, value in data.items()}
        try:
            return cls(**values)
        except ParameterError as error:
            raise ParameterError(f"{field}.{error.parameter}", f"{field}.{error}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _from_plain(item: dataclasses.Field, value: Any) -> Any:
    """A JSON value back in the field's form (lists become tuples where the default is one)."""
    if isinstance(value, list) and isinstance(item.default, tuple):
        return tuple(value)
    return value
