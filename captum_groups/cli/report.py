"""``captum-groups report``: the report of a saved circuit, written again."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from torch import nn

from .._io.data import Data
from .._validation.errors import ParameterError
from ..circuits import (
    Circuit,
)
from ..report import ReportSettings, write_report
from ..report.fits import check_circuit_fits
from .common import (
    _add_common,
    _add_report_options,
    _check_out,
    _next_steps,
    _options_record,
    _prepare,
    _source,
)
from .defaults import REPORT_FIELDS
from .inputs import (
    load_circuit,
)
from .options import (
    OptionError,
    settings_from_args,
)


def _add_report_command(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="write the report of a saved circuit.json again",
        description="Write OUT/report.html for a circuit saved as JSON; --model and --data "
        "must be those the circuit was built on. The circuit's own integration steps and "
        "seed are used unless --n-steps or --random-state are given.",
    )
    report.add_argument("circuit", help="a circuit.json written by 'captum-groups circuit'")
    _add_common(report, None)
    _add_report_options(report, exclude=())
    report.set_defaults(run=_run_report, parser=report)


def _check_circuit_fits(model: nn.Module, circuit: Circuit, data: Data) -> None:
    """The library's check (:func:`~captum_groups.report.fits.check_circuit_fits`), its
    refusals told by option: the same messages as from Python."""
    try:
        check_circuit_fits(model, circuit, data)
    except ParameterError as error:
        option = {"model": "--model", "data": "--data"}.get(error.parameter, "circuit")
        raise OptionError(option, str(error)) from None


def _run_report(args: argparse.Namespace, command: str, started: float) -> None:
    circuit = load_circuit(args.circuit)
    source = _source(args)
    report = settings_from_args(ReportSettings, args, REPORT_FIELDS).for_circuit(circuit)
    model, data, device = _prepare(source, report.random_state)
    _check_circuit_fits(model, circuit, data)
    out = args.out if args.out is not None else str(Path(args.circuit).parent)
    _check_out(out)
    files = write_report(
        model,
        circuit,
        data,
        out,
        settings=report,
        command=command,
        parameters=_options_record(args, source),
        next_steps=_next_steps(source, circuit, out, build=False),
        progress=args.progress,
    )
    print(f"wrote {files.html} and {files.circuit}")
    print(
        f"report assembled in {files.seconds:.1f} s ({time.perf_counter() - started:.1f} s in all)"
    )
