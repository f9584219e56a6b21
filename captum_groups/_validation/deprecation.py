"""Former names, kept for one release: they work and warn (``FutureWarning``).

The package uses one name per idea across the API, the command line and the
JSON (the glossary, ``docs/glossary.md``). A name that changed keeps working
through :func:`renamed_keywords` (keyword arguments) until the next release.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .._model.guards import _user_stacklevel

__all__ = ["apply_renames", "renamed_keywords", "warn_deprecated", "warn_renamed"]

F = TypeVar("F", bound=Callable[..., Any])


def warn_deprecated(what: str, instead: str) -> None:
    """Warn, at the user's line, that ``what`` goes in the next release; say what to use."""
    warnings.warn(
        f"{what} is deprecated and will be removed in the next release; {instead}",
        FutureWarning,
        stacklevel=_user_stacklevel(),
    )


def warn_renamed(old: str, new: str, caller: str) -> None:
    """Warn, at the user's line, that ``old`` is now called ``new``."""
    warn_deprecated(f"{caller}: {old!r}", f"use {new!r} (the same setting under its one name)")


def apply_renames(
    options: dict[str, Any], renames: Mapping[str, str], caller: str
) -> dict[str, Any]:
    """``options`` with each former keyword name replaced by its new name (with a warning).

    Examples
    --------
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     apply_renames({"n_random": 5}, {"n_random": "n_draws"}, "f")
    {'n_draws': 5}
    >>> caught[0].category.__name__
    'FutureWarning'
    """
    for old, new in renames.items():
        if old in options:
            if new in options:
                raise TypeError(
                    f"{caller}() got both {old!r} and its new name {new!r}; give {new!r}"
                )
            warn_renamed(old, new, caller)
            options[new] = options.pop(old)
    return options


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """A decorator: the function accepts its parameters' former names as keywords, warning.

    Examples
    --------
    >>> @renamed_keywords(k="n")
    ... def first(items, n=1):
    ...     return items[:n]
    >>> with warnings.catch_warnings(record=True):
    ...     warnings.simplefilter("always")
    ...     first([1, 2, 3], k=2)
    [1, 2]
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **apply_renames(kwargs, renames, function.__qualname__))

        return wrapper  # type: ignore[return-value]

    return decorate
