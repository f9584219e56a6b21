"""``captum-groups circuit --corrupt ...``: a transformer's circuit through the residual
stream (:func:`~captum_groups.circuits.build_stream_circuit`) and its report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import ParameterError
from ..circuits import Circuit, CircuitSettings, build_stream_circuit
from ..circuits.corruption import CORRUPTIONS
from ..data import batch_inputs
from ..report import ReportSettings
from ..report.stream_report import write_stream_report
from .common import _option_of
from .options import OptionError

__all__ = ["corrupted_file", "parse_target", "report_stream_circuit", "run_stream_circuit"]


def parse_target(text: str) -> int | str:
    """``--target``: a class index, or ``next_token`` (a language model's circuit).

    Examples
    --------
    >>> parse_target("3"), parse_target("next_token")
    (3, 'next_token')
    """
    if text == "next_token":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a class index nor 'next_token'"
        ) from None


def corrupted_file(corrupt: str, data: object) -> Tensor | None:
    """``--corrupt FILE``: the corrupted inputs saved in a tensor file, one per example of
    the data (None for a generator's name)."""
    if corrupt in CORRUPTIONS:
        return None
    path = Path(corrupt)
    if not path.is_file():
        raise OptionError(
            "--corrupt", f"{corrupt!r} is not a file of corrupted inputs nor one of {CORRUPTIONS}"
        )
    try:
        loaded = batch_inputs(torch.load(path, map_location="cpu", weights_only=True), "--corrupt")
    except Exception as error:  # torch.load raises many types for foreign or corrupt files
        raise OptionError("--corrupt", f"{corrupt} is not a tensor file ({error})") from None
    if not isinstance(data, Tensor) or loaded.shape != data.shape or loaded.dtype != data.dtype:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise OptionError(
            "--corrupt",
            f"{corrupt} holds {loaded.dtype} {tuple(loaded.shape)}; it needs one corrupted "
            f"input per example of --data, {getattr(data, 'dtype', '')} {shape}",
        )
    return loaded


def run_stream_circuit(
    model: nn.Module,
    data: object,
    args: argparse.Namespace,
    settings: CircuitSettings,
    report: ReportSettings,
    command: str,
    started: float,
) -> None:
    """Build the circuit through the stream, write its report (``report.n_draws`` random
    circuits per size, at least 8 sizes), say where."""
    if not isinstance(data, Tensor):
        raise OptionError("--data", "a circuit through the stream reads a tensor file of inputs")
    corrupt = settings.corrupt or "resample"
    corrupted = corrupted_file(corrupt, data)
    build_start = time.perf_counter()
    try:
        circuit = build_stream_circuit(
            model, data, args.target, corrupted, settings=settings.replace(corrupt=corrupt),
            progress=args.progress,
        )  # fmt: skip
        build_seconds = time.perf_counter() - build_start
        html, saved = write_stream_report(
            model, circuit, data, args.out, corrupted, n_random=report.n_draws,
            command=command, points=max(report.n_points, 8),
        )  # fmt: skip
    except ParameterError as error:
        raise OptionError(_option_of(error.parameter), str(error)) from None
    print(f"wrote {html} and {saved}")
    print(
        f"circuit built in {build_seconds:.1f} s, report in "
        f"{time.perf_counter() - build_start - build_seconds:.1f} s "
        f"({time.perf_counter() - started:.1f} s in all)"
    )


def report_stream_circuit(
    model: nn.Module,
    circuit: Circuit,
    data: object,
    out: str,
    report: ReportSettings,
    command: str,
) -> None:
    """``captum-groups report`` of a circuit through the stream: its corrupted inputs made
    again as its settings say (a generator, seeded; or the file it names)."""
    corrupt = circuit.settings.corrupt if circuit.settings is not None else None
    if corrupt is None or corrupt == "given":
        raise OptionError(
            "circuit",
            "was built from corrupted inputs given in Python, which it does not hold; write "
            "its report with write_stream_report(model, circuit, data, out, corrupted)",
        )
    if not isinstance(data, Tensor):
        raise OptionError("--data", "a circuit through the stream reads a tensor file of inputs")
    try:
        html, saved = write_stream_report(
            model, circuit, data, out, corrupted_file(corrupt, data), n_random=report.n_draws,
            command=command, points=max(report.n_points, 8),
        )  # fmt: skip
    except ParameterError as error:
        raise OptionError(_option_of(error.parameter), str(error)) from None
    print(f"wrote {html} and {saved}")
