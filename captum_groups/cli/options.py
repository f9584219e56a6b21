"""Command-line options made from settings classes: one definition for the API and the CLI.

:func:`add_settings_options` adds an option per field of a settings class
(:mod:`captum_groups._validation.settings`): its flag is the field name with dashes, its
help the field's doc, its default the field's default unless the command
lists a deliberate difference (shown in ``--help``). :func:`settings_from_args`
builds the settings object back from the parsed options, and turns a
:class:`~captum_groups.ParameterError` into an :class:`OptionError`
naming the flag. Former flags stay as deprecated aliases
(:func:`add_deprecated_alias`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .. import ParameterError
from .._validation.settings import Settings

__all__ = [
    "OptionError",
    "add_deprecated_alias",
    "add_settings_options",
    "command_options",
    "flag_of",
    "one_line",
    "settings_from_args",
]

S = TypeVar("S", bound=Settings)


class OptionError(ValueError):
    """Bad command-line input; the message starts with the option at fault."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {one_line(message)}")
        self.option = option


def one_line(message: object, limit: int = 400) -> str:
    """A message squeezed onto one line (whitespace collapsed, long ones cut).

    Examples
    --------
    >>> one_line("a\\n  b")
    'a b'
    """
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flag_of(name: str) -> str:
    """The option flag of a settings field or parameter: ``n_steps`` -> ``--n-steps``."""
    return "--" + name.replace("_", "-")


def _fields(cls: type[Settings], only: Iterable[str] | None, exclude: Iterable[str]):
    chosen = None if only is None else list(only)
    excluded = set(exclude)
    fields = [
        item
        for item in dataclasses.fields(cls)
        if not item.metadata["cli"].get("skip") and item.name not in excluded
    ]
    if chosen is not None:
        fields = sorted((f for f in fields if f.name in chosen), key=lambda f: chosen.index(f.name))
    return fields


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return str(value)


def add_settings_options(
    group: argparse._ActionsContainer,
    cls: type[Settings],
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    differences: Mapping[str, tuple[Any, str]] | None = None,
) -> list[str]:
    """Add one option per field of ``cls`` to ``group``; return the field names added.

    ``differences`` maps a field to (this command's default, why), for the
    few deliberate departures from the API's defaults; ``--help`` shows both.
    """
    differences = differences or {}
    added = []
    for item in _fields(cls, only, exclude):
        cli = item.metadata["cli"]
        default, why = differences.get(item.name, (item.default, None))
        shown = f"default: {_shown(default)}"
        if why is not None:
            shown = f"default here: {_shown(default)}, {why}; the API's: {_shown(item.default)}"
        keywords: dict[str, Any] = {"dest": item.name, "help": f"{item.metadata['doc']} ({shown})"}
        if isinstance(item.default, bool):
            keywords["action"] = argparse.BooleanOptionalAction
        else:
            keywords["type"] = cli.get("type", type(item.default))
            for key in ("nargs", "choices", "metavar"):
                if key in cli:
                    keywords[key] = cli[key]
        keywords["default"] = list(default) if isinstance(default, tuple) else default
        group.add_argument(flag_of(item.name), **keywords)
        added.append(item.name)
    return added


def settings_from_args(
    cls: type[S], args: argparse.Namespace, names: Sequence[str], **fixed: Any
) -> S:
    """The settings object from parsed options (the fields in ``names``, and ``fixed``).

    A refused value becomes an :class:`OptionError` naming its flag.
    """
    values = {}
    for name in names:
        value = getattr(args, name)
        values[name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**values, **fixed)
    except ParameterError as error:
        raise OptionError(flag_of(error.parameter), str(error)) from None


def command_options(settings: Settings, names: Sequence[str]) -> list[str]:
    """The options that give ``settings``'s fields in ``names`` their values, where they
    differ from the defaults (to repeat them in a follow-up command).

    Examples
    --------
    >>> from captum_groups.circuits import CircuitSettings
    >>> command_options(CircuitSettings(tau=4, adaptive=True), ["tau", "k", "adaptive"])
    ['--tau', '4', '--adaptive']
    """
    options: list[str] = []
    defaults = {item.name: item.default for item in dataclasses.fields(settings)}
    for name in names:
        value = getattr(settings, name)
        if value == defaults[name]:
            continue
        if isinstance(value, bool):
            options.append(flag_of(name) if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, tuple):
            options += [flag_of(name), *map(str, value)]
        elif value is not None:
            options += [flag_of(name), str(value)]
    return options


class _DeprecatedAlias(argparse.Action):
    """A former flag: sets the new option's field, and says it is deprecated."""

    def __init__(self, *args: Any, replacement: str, constant: Any = None, **kwargs: Any) -> None:
        self.replacement, self.constant = replacement, constant
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the "
            f"next release; use {self.replacement}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, self.constant if self.nargs == 0 else values)


def add_deprecated_alias(
    group: argparse._ActionsContainer,
    flag: str,
    replacement: str,
    dest: str,
    constant: Any = None,
    type: Any = None,
) -> None:
    """A former flag kept for one release: ``--seed N`` for ``--random-state N``, or a switch
    (``constant`` given) such as ``--quiet`` for ``--no-progress``."""
    switch = type is None
    group.add_argument(
        flag,
        action=_DeprecatedAlias,
        replacement=replacement,
        constant=constant,
        dest=dest,
        nargs=0 if switch else None,
        type=type,
        default=argparse.SUPPRESS,
        help=f"deprecated: use {replacement}",
    )
