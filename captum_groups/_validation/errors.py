"""The package's error for a refused parameter, in a module that imports nothing of the
package, so that every module, the lowest (:mod:`captum_groups.groups`) included, raises it."""

from __future__ import annotations

__all__ = ["ParameterError"]


class ParameterError(ValueError, TypeError):
    """A parameter was given a value it does not accept.

    It is both a ``ValueError`` and a ``TypeError`` (a wrong value and a wrong
    type are both refused through it), so code that caught either before
    still catches it. ``parameter`` is the parameter's name, as the function
    or settings field spells it (a dotted path for a field of a file).

    Examples
    --------
    >>> error = ParameterError("tau", "tau must be a positive int, got 0")
    >>> error.parameter, str(error)
    ('tau', 'tau must be a positive int, got 0')
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


ParameterError.__module__ = "captum_groups"  # where users import it from
