"""Every JSON file the package reads, declared once, read strictly (``jsonschema``).

:func:`read_json` parses text the strict way: a key repeated in one object, a
NaN or infinite number, and nesting deeper than :data:`MAX_DEPTH` are refused
(Python's ``json`` would keep the last key, accept ``NaN`` and run out of
stack). :func:`check` validates parsed data against a schema and reports the
first problem with the JSON path of its field, e.g. ``$.nodes['a'].label``.
Both raise a :class:`~captum_groups.ParameterError` whose ``parameter`` is
that path.

The schemas: :data:`GROUP` (one neuron group, as ``NeuronGroup.to_dict``
writes it), :data:`GROUPSET` (``GroupSet.to_json``), :data:`GROUP_LIST` (the
command line's ``--groups`` list), :data:`CIRCUIT` (``Circuit.to_json``) and
:data:`ATLAS_ROW` (an atlas class's ``summary.json``). What JSON cannot say
(an edge from a lower layer to an upper one, one typical activation per
member neuron) is checked by the objects built from it.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .._validation.errors import ParameterError

__all__ = [
    "ATLAS_ROW",
    "CIRCUIT",
    "GROUP",
    "GROUPSET",
    "GROUP_LIST",
    "MAX_DEPTH",
    "check",
    "read_json",
]

MAX_DEPTH = 32
"""The deepest nesting of arrays and objects a file may have (a circuit needs 6)."""

MAX_INT = 2**62
"""The largest integer a file may hold (indices, counts; larger ones overflow tensors)."""

INDEX = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
TEXT = {"type": "string", "maxLength": 10_000}
OPTIONAL_TEXT = {"type": ["string", "null"], "maxLength": 10_000}
NUMBER = {"type": "number"}

GROUP: dict[str, Any] = {
    "type": "object",
    "required": ["layer", "indices"],
    "additionalProperties": False,
    "properties": {
        "layer": {"type": "string", "minLength": 1, "maxLength": 1000},
        "indices": {"type": "array", "items": INDEX, "minItems": 1},
        "weights": {"type": ["array", "null"], "items": NUMBER},
        "name": OPTIONAL_TEXT,
        "label": OPTIONAL_TEXT,
        "reduction": {
            "oneOf": [
                {"enum": ["mean", "sum", "max"]},
                {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
            ]
        },
        "dim": {"type": ["integer", "null"], "minimum": -64, "maximum": 64},
        "call": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_INT},
    },
}
"""One neuron group (``NeuronGroup.to_dict``)."""

GROUP_LIST: dict[str, Any] = {"type": "array", "items": GROUP, "minItems": 1}
"""A list of groups (the command line's ``--groups`` file)."""

GROUPSET: dict[str, Any] = {
    "type": "object",
    "required": ["format", "groups"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": "captum-groups groupset"},
        "version": {"const": 1},
        "layer": {"type": ["string", "null"]},
        "groups": {
            "type": "array",
            "items": {**GROUP, "required": ["indices"]},
        },
    },
}
"""A GroupSet file (``GroupSet.to_json``); a group may leave out the file's layer."""

BOX = {"type": "array", "items": INDEX, "minItems": 4, "maxItems": 4}

CIRCUIT: dict[str, Any] = {
    "type": "object",
    "required": ["format", "version", "target", "layers", "nodes", "edges"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": "captum-groups circuit"},
        "version": {"const": 1},
        "target": {"oneOf": [INDEX, GROUP, {"const": "next_token"}]},
        "layers": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "uniqueItems": True,
        },
        "nodes": {"type": "object", "additionalProperties": GROUP},
        "edges": {
            "type": "array",
            "items": {
                "type": "array",
                "prefixItems": [TEXT, TEXT, NUMBER],
                "minItems": 3,
                "maxItems": 3,
            },
        },
        "exemplars": {
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "array",
                    "prefixItems": [INDEX, BOX],
                    "minItems": 2,
                    "maxItems": 2,
                },  # fmt: skip
            },
        },
        "params": {"type": ["object", "null"]},
        "settings": {"type": ["object", "null"]},
        "core_neurons": {
            "type": ["object", "null"],
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": INDEX},
            },
        },
        "typical_activations": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "array", "items": NUMBER},
        },
        "label_details": {
            "type": ["object", "null"],
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "score": {"type": ["number", "null"]},
                    "labeler": OPTIONAL_TEXT,
                    "evidence": {},
                },
            },
        },
    },
}
"""A circuit (``Circuit.to_json``)."""

FIDELITY_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["baseline", "circuit", "random", "random_ci"],
    "properties": {
        "baseline": NUMBER,
        "circuit": NUMBER,
        "random": NUMBER,
        "random_ci": {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2},
    },
}

FAITHFUL_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["edges_kept", "share", "recovered", "random", "random_ci"],
    "properties": {
        "edges_kept": INDEX,
        "share": NUMBER,
        "recovered": NUMBER,
        "random": NUMBER,
        "random_ci": {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2},
    },
}

ATLAS_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["target", "images", "groups", "edges", "provenance"],
    # a NeurFlow circuit's fidelity (masked, retained), or a circuit through the stream's
    # faithfulness (the smallest circuit keeping 80%, against random ones)
    "oneOf": [{"required": ["masked", "retained"]}, {"required": ["faithful"]}],
    "properties": {
        "target": INDEX,
        "images": INDEX,
        "groups": {"type": "object", "additionalProperties": INDEX},
        "edges": INDEX,
        "masked": FIDELITY_ROW,
        "retained": FIDELITY_ROW,
        "faithful": FAITHFUL_ROW,
        "report": {"type": "boolean"},
        "provenance": {"type": "object"},
    },
}
"""An atlas class's ``summary.json`` (read back when an atlas is resumed)."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ParameterError("$", f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


class _NonFinite:
    """Where ``NaN``, ``Infinity`` or ``-Infinity`` stood in a file (found after parsing, so
    that the error can name the field)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _first_non_finite(data: Any) -> tuple[str, str] | None:
    """The JSON path and spelling of the first non-finite number in ``data``, if any."""
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _NonFinite):
            return path, value.name
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}") for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


def _depth(data: Any) -> int:
    """How deeply arrays and objects nest in ``data`` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


def read_json(text: str | bytes, what: str) -> Any:
    """``text`` parsed strictly (see the module docstring); ``what`` names it in errors.

    Examples
    --------
    >>> read_json('{"a": 1, "a": 2}', "groups file")
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: groups file: the key 'a' appears twice in one object
    >>> read_json('{"nodes": [{"weights": [1.0, NaN]}]}', "circuit")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: circuit field $.nodes[0].weights[1]: NaN is not a number ...
    """
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats, parse_constant=_NonFinite)
    except ParameterError as error:
        raise ParameterError(what, f"{what}: {error}") from None
    except RecursionError:
        raise ParameterError(what, f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ParameterError(what, f"{what} is not valid JSON ({error})") from None
    if _depth(data) > MAX_DEPTH:
        raise ParameterError(what, f"{what} nests deeper than {MAX_DEPTH} levels")
    non_finite = _first_non_finite(data)
    if non_finite is not None:
        path, name = non_finite
        raise ParameterError(
            f"{what}{path[1:]}",
            f"{what} field {path}: {name} is not a number JSON allows (a finite number is needed)",
        )
    return data


def check(data: Any, schema: dict[str, Any], what: str) -> None:
    """Validate parsed data; the first problem is reported with its field's JSON path.

    Examples
    --------
    >>> check({"layer": "relu3", "indices": [1, -2]}, GROUP, "group")
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: group field $.indices[1]: -2 is less than the minimum of 0
    """
    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        raise ParameterError(
            f"{what}{error.json_path[1:]}", f"{what} field {error.json_path}: {error.message}"
        )
