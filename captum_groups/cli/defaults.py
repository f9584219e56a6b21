"""The command line's own constants: its few defaults that differ from the API's, and
which options each command has beside the settings fields."""

from __future__ import annotations

from typing import Any

from ..circuits import (
    CircuitSettings,
)
from ..report import ReportSettings
from .inputs import (
    Source,
)

CLI_DEFAULTS: dict[str, dict[str, tuple[Any, str]]] = {
    "circuit": {
        "tau": (8, "a lighter first circuit (NeurFlow: 16)"),
        "k": (30, "a lighter first circuit (NeurFlow: 50)"),
        "thumbnails": (6, "one row of exemplars per card in the report"),
        "random_state": (0, "a command gives the same output every time"),
    },
    "attribute": {
        "n_steps": (32, "smoother maps than the circuit's scores need"),
        "random_state": (0, "a command gives the same output every time"),
    },
}


CLI_DEFAULTS["atlas"] = CLI_DEFAULTS["circuit"]
"""The one place where a command's default differs from the API's: command -> field ->
(default, why). ``--help`` shows both defaults."""


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
