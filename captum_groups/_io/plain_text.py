"""Text in the package's figures is plain text: a label like ``cost $\\x$`` is shown as typed.

Matplotlib reads text between dollar signs as mathtext, so a group's label or
name holding ``$`` would be typeset, or fail to draw (``cost $\\x$`` raises).
Every function that makes a figure is decorated with :func:`plain_text`; text
created inside it does not parse mathtext (matplotlib's ``text.parse_math``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import matplotlib as mpl

__all__ = ["plain_text"]

F = TypeVar("F", bound=Callable[..., Any])


def plain_text(function: F) -> F:
    """Make the figures ``function`` draws show their text as plain text.

    Examples
    --------
    >>> import io
    >>> from matplotlib.figure import Figure
    >>> @plain_text
    ... def titled(title):
    ...     figure = Figure()
    ...     figure.add_subplot().set_title(title)
    ...     return figure
    >>> titled("cost $\\\\x$").savefig(io.BytesIO(), format="png")
    """

    @functools.wraps(function)
    def plain(*args: Any, **kwargs: Any) -> Any:
        with mpl.rc_context({"text.parse_math": False}):
            return function(*args, **kwargs)

    return plain  # type: ignore[return-value]
