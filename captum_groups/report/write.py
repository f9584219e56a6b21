"""write_report: the report (``report.html``) and the circuit (``circuit.json``) in a folder."""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import nn

from .._validation.deprecation import apply_renames
from ..circuits import Circuit
from ..data import Data
from ..files import write_atomic
from .assemble import assemble
from .fits import check_circuit_fits
from .html import render_html
from .settings import RENAMED, ReportSettings

__all__ = ["ReportFiles", "write_report"]

VERSIONED = ("captum-groups", "torch", "torchvision", "captum", "torch-lucent", "scikit-learn")
"""Packages whose versions the report records."""


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote, and how long the report took.

    Attributes
    ----------
    html, circuit : Path
        ``report.html`` and ``circuit.json``.
    seconds : float
        The time the page states as "report assembled" (the same number, so the
        command and the page never disagree): evaluating, drawing and rendering.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> import tempfile
    >>> files = write_report(model, circuit, x, tempfile.mkdtemp(), render_steps=0, n_draws=2,
    ...                      progress=False)
    >>> files.html.name, files.circuit.name, files.seconds > 0
    ('report.html', 'circuit.json', True)
    """

    html: Path
    circuit: Path
    seconds: float


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _python_next_steps(out: Path) -> list[tuple[str, str]]:
    return [
        (
            "Load the circuit in Python (JSON, no pickle)",
            f"Circuit.from_json(Path({str(out / 'circuit.json')!r}).read_text())",
        )
    ]


def write_report(
    model: nn.Module,
    circuit: Circuit,
    data: Data,
    out: str | Path,
    *,
    settings: ReportSettings | None = None,
    command: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    next_steps: Sequence[tuple[str, str]] | None = None,
    build_seconds: float | None = None,
    progress: bool = True,
    **options: Any,
) -> ReportFiles:
    """Write ``report.html`` (self-contained) and ``circuit.json`` into ``out``.

    The page draws the circuit as a layered SVG graph (edge width by weight,
    red positive, blue negative); hovering a node shows its card, clicking
    pins it. A group's card has its layer and neurons, its exemplar crops,
    its Lucent rendering, attribution overlays of its exemplars and its
    share of the target. The page also has the masking and retaining
    fidelity curves against random neurons (per layer and all layers, 95%
    CIs), the edge-weight fidelity, what to do next, and how the report was
    made (command, settings, versions, time). No network is needed to view
    it: styles, script and pictures are inline.

    Parameters
    ----------
    model : nn.Module
        The model the circuit was built on.
    circuit : Circuit
        The circuit.
    data : Tensor, Dataset or DataLoader
        The data the circuit was built on (its exemplar indices refer to it).
    out : str or Path
        Folder to write into (created if needed).
    settings : ReportSettings, optional
        What the report computes; integration steps and seed default to the
        circuit's own (``circuit.settings``).
    command : str, optional
        The command that produced the report, shown verbatim.
    parameters : mapping, optional
        Further settings to record (e.g. the command's options).
    next_steps : sequence of (str, str), optional
        Suggested commands (what, command); a Python snippet by default.
    build_seconds : float, optional
        Time taken to build the circuit, to record.
    progress : bool
        Show a progress bar.
    **options
        Any field of :class:`ReportSettings`, applied over ``settings``.

    Returns
    -------
    ReportFiles

    Examples
    --------
    >>> import tempfile
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         n_steps=8, progress=False)
    >>> files = write_report(model, circuit, x, tempfile.mkdtemp(), render_steps=4,
    ...                      n_draws=3, progress=False)
    >>> files.html.name, Circuit.from_json(files.circuit.read_text()) == circuit
    ('report.html', True)
    """
    start = time.perf_counter()
    out = Path(out)
    options = apply_renames(options, RENAMED, "write_report")
    settings = ReportSettings.merged(settings, options, "write_report")
    check_circuit_fits(model, circuit, data)  # before any work: the same check as the command's
    content = assemble(model, circuit, data, settings, progress)
    report_seconds = time.perf_counter() - start
    timing = [("circuit built", build_seconds)] if build_seconds is not None else []
    timing.append(("report assembled", report_seconds))
    timing += list(content.timing.items())
    first = next(iter(model.parameters()), None)
    provenance = {
        "command": command,
        "next_steps": list(next_steps) if next_steps is not None else _python_next_steps(out),
        "timing": timing,
        "parameters": {
            "build_circuit": dict(circuit.params),
            "report": content.settings,
            **({"command options": dict(parameters)} if parameters else {}),
        },
        "versions": _versions(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(first.device) if first is not None else "cpu",
    }
    page = render_html(content, provenance)
    out.mkdir(parents=True, exist_ok=True)
    html_path, circuit_path = out / "report.html", out / "circuit.json"
    # A report on disk always matches the circuit beside it: the old report goes first, then
    # the new circuit, then the new report, each written whole and renamed into place (a
    # symbolic link there is replaced, never written through).
    html_path.unlink(missing_ok=True)
    write_atomic(circuit_path, circuit.to_json())
    write_atomic(html_path, page)
    return ReportFiles(html_path, circuit_path, report_seconds)
