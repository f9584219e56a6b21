"""Captum's private API, imported in one place.

The package builds on a few of Captum's internal helpers (integration rules,
input formatting). They are not part of Captum's public API, so they are
imported here only; ``tests/test_captum_compat.py`` checks them against the
installed Captum.
"""

from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    approximation_parameters,
)

__all__ = ["SUPPORTED_METHODS", "approximation_parameters"]
