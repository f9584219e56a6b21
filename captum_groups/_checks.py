"""Checks of plain parameters shared by the public functions: clear errors that name them."""

from __future__ import annotations

import math
from numbers import Real

from ._captum import SUPPORTED_METHODS

__all__ = ["check_finite", "check_integration", "check_method", "check_positive_int"]


def check_positive_int(value: object, parameter: str, optional: bool = False) -> None:
    """Refuse anything but an int >= 1 (or None when ``optional``).

    Examples
    --------
    >>> check_positive_int(3, "n_steps")
    >>> check_positive_int(0, "n_steps")
    Traceback (most recent call last):
    ...
    ValueError: n_steps must be a positive int, got 0
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{parameter} must be a positive int, got {value!r}")


def check_finite(value: object, parameter: str) -> None:
    """Refuse a NaN or infinite number.

    Examples
    --------
    >>> check_finite(float("nan"), "value")
    Traceback (most recent call last):
    ...
    ValueError: value must be a finite number, got nan
    """
    if isinstance(value, Real) and not math.isfinite(float(value)):
        raise ValueError(f"{parameter} must be a finite number, got {value!r}")


def check_method(method: object, parameter: str = "method") -> None:
    """Refuse an integration method Captum does not know."""
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"{parameter} must be one of {list(SUPPORTED_METHODS)}, got {method!r}")


def check_integration(n_steps: object, method: object, internal_batch_size: object) -> None:
    """Refuse bad integration settings: step counts below 1, a method Captum does not know.

    Examples
    --------
    >>> check_integration(32, "riemann_trapezoid", None)
    >>> check_integration(32, "riemann_trapezoid", 0)
    Traceback (most recent call last):
    ...
    ValueError: internal_batch_size must be a positive int, got 0
    """
    check_positive_int(n_steps, "n_steps")
    check_method(method)
    check_positive_int(internal_batch_size, "internal_batch_size", optional=True)
