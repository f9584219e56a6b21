"""``captum-groups report``: the report of a saved circuit, written again."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from torch import nn

from .._io.data import Data, n_examples
from .._model.capture import LayerCapture, record
from ..circuits import (
    Circuit,
)
from ..report import ReportSettings, write_report
from .common import (
    _add_common,
    _add_report_options,
    _check_out,
    _first_image,
    _next_steps,
    _options_record,
    _prepare,
    _source,
)
from .defaults import REPORT_FIELDS
from .inputs import (
    check_layers,
    check_target_index,
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


def _check_circuit_fits(model: nn.Module, circuit: Circuit, data: Data, device) -> None:
    """The saved circuit must be one of this model and these data: its layers, its groups'
    neurons, its exemplars' images and boxes; checked before any work, each named."""
    check_layers(model, circuit.layers, "--model")
    first = _first_image(data).to(device)
    captures = {layer: LayerCapture(model.get_submodule(layer)) for layer in circuit.layers}
    output = record(model, first, list(captures.values()))
    for node, group in circuit.nodes.items():
        try:
            group.validate_output(captures[group.layer].output[0])
        except ValueError as error:
            raise OptionError("circuit", f"node {node!r} does not fit --model: {error}") from None
    height, width = first.shape[-2:]
    for node, items in circuit.exemplars.items():
        for _, (top, left, box_h, box_w) in items:
            if top + box_h > height or left + box_w > width:
                raise OptionError(
                    "circuit",
                    f"node {node!r} has an exemplar crop box {(top, left, box_h, box_w)} outside "
                    f"the {height}x{width} images of --data; pass the data (and --image-size) "
                    f"the circuit was built on",
                )
    size = n_examples(data)
    indices = [i for items in circuit.exemplars.values() for i, _ in items]
    if size is not None and indices and max(indices) >= size:
        raise OptionError(
            "--data",
            f"the circuit's exemplars refer to image {max(indices)}, but the data hold {size} "
            f"images; pass the data the circuit was built on",
        )
    if isinstance(circuit.target, int):
        check_target_index(circuit.target, output.shape[1])


def _run_report(args: argparse.Namespace, command: str, started: float) -> None:
    circuit = load_circuit(args.circuit)
    source = _source(args)
    report = settings_from_args(ReportSettings, args, REPORT_FIELDS).for_circuit(circuit)
    model, data, device = _prepare(source, report.random_state)
    _check_circuit_fits(model, circuit, data, device)
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
