"""Captum's private API, imported in one place.

The package builds on some of Captum's internal helpers: input formatting,
integration rules, step batching, the forward runner, type aliases. They are
not part of Captum's public API and may change between releases, so they are
imported here only (a test checks that no other module imports them), and
``tests/attr/test_captum_compat.py`` checks each one's behaviour against the
installed Captum. pyproject.toml allows the Captum releases those tests pass
on.
"""

from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
    _run_forward,
    _verify_select_neuron,
)
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    approximation_parameters,
)
from captum.attr._utils.batching import _batch_attribution
from captum.attr._utils.common import _format_input_baseline, _reshape_and_sum, _validate_input

__all__ = [
    "SUPPORTED_METHODS",
    "BaselineType",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "_batch_attribution",
    "_expand_additional_forward_args",
    "_expand_target",
    "_format_additional_forward_args",
    "_format_input_baseline",
    "_format_output",
    "_format_tensor_into_tuples",
    "_is_tuple",
    "_reshape_and_sum",
    "_run_forward",
    "_validate_input",
    "_verify_select_neuron",
    "approximation_parameters",
]
