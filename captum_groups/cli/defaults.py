"""The command line's own constants: its few defaults that differ from the API's, and
which options each command has beside the settings fields."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..circuits import (
    CircuitSettings,
)
from ..report import ReportSettings
from .inputs import (
    Source,
)


def _declared_defaults(*classes: type) -> dict[str, dict[str, tuple[Any, str]]]:
    """Command -> field -> (default, why), from the ``cli={"defaults": ...}`` that settings
    fields declare."""
    found: dict[str, dict[str, tuple[Any, str]]] = {}
    for cls in classes:
        for item in dataclasses.fields(cls):
            for command, default in item.metadata["cli"].get("defaults", {}).items():
                found.setdefault(command, {})[item.name] = default
    return found


CLI_DEFAULTS = _declared_defaults(CircuitSettings, ReportSettings)
"""Where a command's default differs from the API's: command -> field -> (default, why),
as the settings fields declare it (``cli={"defaults": ...}``). ``--help`` shows both."""


REPORT_FIELDS_OF_CIRCUIT = ("n_steps", "random_state", "batch_size")
"""Report settings the ``circuit`` command takes from the circuit's settings (one option each)."""


COMMAND_OPTIONS: dict[str, tuple[str, ...]] = {
    "circuit": ("target", "layers", "out", "progress", "threads"),
    "report": ("circuit", "out", "progress", "threads"),
    "attribute": (
        "groups",
        "nodes",
        "images",
        "indices",
        "attribution",
        "out",
        "progress",
        "threads",
    ),
    "classes": ("top", "batch_size", "out", "progress", "threads"),
    "atlas": (
        "targets",
        "layers",
        "backend",
        "address",
        "workers",
        "resume",
        "reports",
        "out",
        "progress",
        "threads",
    ),
}
"""Per command, the options that are not settings fields: what to explain, where to write."""


PARAMETER_OPTIONS = {
    "target": "--target",
    "targets": "--target",
    "layers": "--layers",
    "out": "--out",
    "workers": "--workers",
    "backend": "--backend",
    "model": "--model",
    "data": "--data",
}
"""Parameters of build_circuit that are options but not settings."""


SOURCE_FIELDS = tuple(Source.__dataclass_fields__)


CIRCUIT_FIELDS = tuple(
    name
    for name, item in CircuitSettings.__dataclass_fields__.items()
    if not item.metadata["cli"].get("skip")
)


REPORT_FIELDS = tuple(ReportSettings.__dataclass_fields__)


IMAGE_OPTIONS = ("image_size", "mean", "std", "normalize", "grayscale")
"""How image files are read: used only when --data is an image folder."""
