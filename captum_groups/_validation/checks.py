"""Parameter checks, declared once: one error type that carries the parameter's name.

Following scikit-learn's ``_parameter_constraints``, a function or a settings
object declares what each parameter accepts as a :class:`Constraint`, and
:func:`validate` checks the values against the declaration. Every refusal is
a :class:`ParameterError` whose ``parameter`` attribute names the parameter,
so callers (the command line) map an error back to an option by name, never
by the text of the message.

The ``check_*`` helpers are the common declarations, for call sites that
check one value.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

from .._model.captum import SUPPORTED_METHODS
from .._validation.errors import ParameterError

__all__ = [
    "Choice",
    "Constraint",
    "Count",
    "Flag",
    "Number",
    "ParameterError",
    "CALL",
    "METHOD",
    "SEED",
    "Satisfies",
    "check_finite",
    "check_integration",
    "check_method",
    "check_positive_int",
    "check_quadrature",
    "validate",
]


class Constraint(ABC):
    """What a parameter accepts: ``accepts(value)`` and a ``description`` for messages."""

    description: str = "valid"

    @abstractmethod
    def accepts(self, value: object) -> bool:
        """Whether ``value`` is acceptable."""

    def check(self, value: object, parameter: str) -> None:
        """Raise a :class:`ParameterError` naming ``parameter`` unless ``value`` is accepted."""
        if not self.accepts(value):
            raise ParameterError(
                parameter, f"{parameter} must be {self.description}, got {value!r}"
            )


MAX_INT = 2**62
"""The largest count any parameter accepts."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Count(Constraint):
    """An int (never a bool) from ``low`` up to ``high``; None too if ``optional``.

    Examples
    --------
    >>> Count(1).description, Count(0).description, Count(2, 5).description
    ('a positive int', 'an int >= 0', 'an int between 2 and 5')
    """

    low: int = 1
    high: int | None = None
    optional: bool = False

    @property
    def description(self) -> str:  # type: ignore[override]
        if self.high is not None:
            text = f"an int between {self.low} and {self.high}"
        else:
            text = "a positive int" if self.low == 1 else f"an int >= {self.low}"
        return f"{text} or None" if self.optional else text

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        # without a bound of its own, a count still stops at MAX_INT (larger ints overflow
        # the 64-bit integers of tensors deep inside a call)
        high = self.high if self.high is not None else MAX_INT
        return _is_int(value) and self.low <= value <= high  # type: ignore[operator]


@dataclass(frozen=True)
class Number(Constraint):
    """A finite real number (never a bool) in a range; bounds are closed unless ``open``.

    Examples
    --------
    >>> Number(0, 1).accepts(0.5), Number(0, open=True).accepts(0.0)
    (True, False)
    """

    low: float | None = None
    high: float | None = None
    open: bool = False
    optional: bool = False

    @property
    def description(self) -> str:  # type: ignore[override]
        low, high = ("(", ")") if self.open else ("[", "]")
        if self.low is not None and self.high is not None:
            text = f"a number in {low}{self.low}, {self.high}{high}"
        elif self.low == 0 and self.open:
            text = "a positive number"
        elif self.low is not None:
            text = f"a number {'>' if self.open else '>='} {self.low}"
        elif self.high is not None:
            text = f"a number {'<' if self.open else '<='} {self.high}"
        else:
            text = "a finite number"
        return f"{text} or None" if self.optional else text

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, Real):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        if self.low is not None and (number <= self.low if self.open else number < self.low):
            return False
        return self.high is None or (number < self.high if self.open else number <= self.high)


@dataclass(frozen=True)
class Choice(Constraint):
    """One of a few values."""

    options: tuple[Any, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"one of {list(self.options)}"

    def accepts(self, value: object) -> bool:
        return any(value == option and type(value) is type(option) for option in self.options)


@dataclass(frozen=True)
class Flag(Constraint):
    """True or False."""

    description: str = "True or False"

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Satisfies(Constraint):
    """Anything ``test`` accepts, described in words."""

    test: Callable[[object], bool]
    description: str = "valid"

    def accepts(self, value: object) -> bool:
        return bool(self.test(value))


def validate(constraints: Mapping[str, Constraint], values: Mapping[str, object]) -> None:
    """Check each named value against its declared constraint, in declaration order.

    Examples
    --------
    >>> validate({"k": Count(1), "tolerance": Number(0, 1)}, {"k": 5, "tolerance": 2})
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: tolerance must be a number in [0, 1], got 2
    """
    for name, constraint in constraints.items():
        if name in values:
            constraint.check(values[name], name)


def check_positive_int(value: object, parameter: str, optional: bool = False) -> None:
    """Refuse anything but an int >= 1 (or None when ``optional``).

    Examples
    --------
    >>> check_positive_int(3, "n_steps")
    >>> check_positive_int(0, "n_steps")
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: n_steps must be a positive int, got 0
    """
    if optional and value is None:
        return
    Count(1).check(value, parameter)


def check_finite(value: object, parameter: str) -> None:
    """Refuse a NaN or infinite number.

    Examples
    --------
    >>> check_finite(float("nan"), "value")
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: value must be a finite number, got nan
    """
    if isinstance(value, Real) and not math.isfinite(float(value)):
        raise ParameterError(parameter, f"{parameter} must be a finite number, got {value!r}")


SEED = Count(0, 2**32 - 1, optional=True)
"""A ``random_state``: None, or a seed NumPy, scikit-learn and torch all accept."""

CALL = Count(0, optional=True)
"""A run of a layer that runs several times in one forward pass (0 = first), or None."""

METHOD = Choice(tuple(SUPPORTED_METHODS))
"""An integral approximation Captum knows."""


def check_method(method: object, parameter: str = "method") -> None:
    """Refuse an integration method Captum does not know."""
    METHOD.check(method, parameter)


def check_quadrature(n_steps: object, method: object) -> None:
    """Refuse a step count or rule Captum cannot integrate with: Riemann rules need at
    least 2 steps (both ends of a step), Gauss-Legendre at least 1.

    Examples
    --------
    >>> check_quadrature(1, "riemann_trapezoid")
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: method='riemann_trapezoid' needs n_steps >= 2, got 1
    """
    check_positive_int(n_steps, "n_steps")
    check_method(method)
    if method != "gausslegendre" and n_steps < 2:  # type: ignore[operator]
        raise ParameterError("n_steps", f"method={method!r} needs n_steps >= 2, got {n_steps}")


def check_integration(n_steps: object, method: object, internal_batch_size: object = None) -> None:
    """Refuse bad integration settings: step counts below 1, a method Captum does not know.

    Examples
    --------
    >>> check_integration(32, "riemann_trapezoid", None)
    >>> check_integration(32, "riemann_trapezoid", 0)
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: internal_batch_size must be a positive int, got 0
    """
    check_positive_int(n_steps, "n_steps")
    check_method(method)
    check_positive_int(internal_batch_size, "internal_batch_size", optional=True)
