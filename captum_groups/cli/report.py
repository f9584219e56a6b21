"""``captum-groups report``: the report of a saved circuit, written again."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import ParameterError
from ..report import ReportSettings, write_report
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
from .stream_circuit import report_stream_circuit


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


FIT_OPTIONS = {"model": "--model", "data": "--data", "circuit": "circuit"}
"""The option of each refusal of :func:`~captum_groups.report.fits.check_circuit_fits`."""


def _run_report(args: argparse.Namespace, command: str, started: float) -> None:
    circuit = load_circuit(args.circuit)
    source = _source(args)
    report = settings_from_args(ReportSettings, args, REPORT_FIELDS).for_circuit(circuit)
    model, data, _ = _prepare(source, report.random_state)
    out = args.out if args.out is not None else str(Path(args.circuit).parent)
    _check_out(out)
    if circuit.through_stream:
        report_stream_circuit(model, circuit, data, out, report, command)
        return
    try:
        # write_report checks first that the circuit fits the model and data (one forward
        # pass); its refusals are told by option, with the same messages as from Python
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
    except ParameterError as error:
        if error.parameter not in FIT_OPTIONS:
            raise
        raise OptionError(FIT_OPTIONS[error.parameter], str(error)) from None
    print(f"wrote {files.html} and {files.circuit}")
    print(
        f"report assembled in {files.seconds:.1f} s ({time.perf_counter() - started:.1f} s in all)"
    )
