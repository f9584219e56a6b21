"""``captum-groups circuit``: build a class's circuit and write its report."""

from __future__ import annotations

import argparse
import time

from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import ParameterError
from ..circuits import (
    Circuit,
    CircuitSettings,
    ClassRouting,
    build_circuit,
    route_classes,
)
from ..circuits.requests import check_predicted, check_request
from ..report import ReportSettings, write_report
from .common import (
    _add_common,
    _add_report_options,
    _check_out,
    _next_steps,
    _option_of,
    _options_record,
    _prepare,
    _source,
)
from .defaults import CIRCUIT_FIELDS, CLI_DEFAULTS, REPORT_FIELDS, REPORT_FIELDS_OF_CIRCUIT
from .inputs import DIGITS_LAYERS
from .options import (
    OptionError,
    add_deprecated_alias,
    add_settings_options,
    settings_from_args,
)
from .stream_circuit import parse_target, run_stream_circuit


def _add_circuit_command(commands: argparse._SubParsersAction) -> None:
    circuit = commands.add_parser(
        "circuit",
        help="build the circuit of a class and write report.html and circuit.json",
        description="Build NeurFlow's circuit of neuron groups for a class, top-down from its "
        "logit, and write OUT/report.html (open it in a browser) and OUT/circuit.json. With "
        "--corrupt, a transformer's circuit of heads and MLPs through the residual stream, "
        "scored by EAP-IG between the data and its corrupted inputs.",
        epilog="Examples: captum-groups circuit --target 3 --out report | captum-groups "
        "circuit --model torchvision:resnet18 --weights r18.pt --data images/ --layers "
        "layer3.1 layer4.1 --target 207 --out report | captum-groups circuit --model "
        "captum_groups.digits_vit:digits_vit --target 3 --corrupt resample --out vit",
    )
    group = circuit.add_argument_group("circuit (CircuitSettings, and what to explain)")
    group.add_argument(
        "--target",
        type=parse_target,
        required=True,
        help="the class (output index) to explain, or next_token (a language model's "
        "circuit through the stream: each position's next token)",
    )
    group.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="dotted layer names in forward order, lowest first, e.g. layer3.1 layer4.1 "
        f"(default for the digits CNN: {' '.join(DIGITS_LAYERS)})",
    )
    add_settings_options(group, CircuitSettings, differences=CLI_DEFAULTS["circuit"])
    add_deprecated_alias(
        group, "--all-images", "--no-predicted-only", "predicted_only", constant=False
    )
    _add_common(circuit, "report")
    _add_report_options(circuit, exclude=REPORT_FIELDS_OF_CIRCUIT)
    circuit.set_defaults(run=_run_circuit, parser=circuit)


def _check_request(
    model: nn.Module, args: argparse.Namespace, data: Tensor | Dataset, settings: CircuitSettings
) -> ClassRouting:
    """The library's checks of the request, before any pass over the data, then the routing
    (each image's predicted class) that the build reads instead of predicting again."""
    try:
        check_request(model, args.layers, [args.target], data)
        routing = route_classes(model, data, settings.batch_size, progress=args.progress)
        check_predicted(routing, args.target, settings.predicted_only)
    except ParameterError as error:
        raise OptionError(_option_of(error.parameter), str(error)) from None
    return routing


def _build(
    model: nn.Module,
    args: argparse.Namespace,
    data: Tensor | Dataset,
    settings: CircuitSettings,
    routing: ClassRouting,
) -> Circuit:
    """build_circuit, its refusals mapped to options by the parameter's name."""
    try:
        return build_circuit(
            model,
            args.layers,
            args.target,
            data,
            settings=settings,
            progress=args.progress,
            routing=routing,
        )
    except ParameterError as error:
        raise OptionError(_option_of(error.parameter), str(error)) from None


def _run_circuit(args: argparse.Namespace, command: str, started: float) -> None:
    source = _source(args)
    settings = settings_from_args(CircuitSettings, args, CIRCUIT_FIELDS)
    own = [name for name in REPORT_FIELDS if name not in REPORT_FIELDS_OF_CIRCUIT]
    report = settings_from_args(ReportSettings, args, own)
    model, data, _ = _prepare(source, settings.random_state)
    if settings.corrupt is not None or args.target == "next_token":
        _check_out(args.out)
        run_stream_circuit(model, data, args, settings, report, command, started)
        return
    if args.layers is None:
        if source.model is not None:
            raise OptionError(
                "--layers",
                "is required with --model (dotted names, lowest first, e.g. layer3.1 layer4.1)",
            )
        args.layers = list(DIGITS_LAYERS)
    _check_out(args.out)
    build_start = time.perf_counter()
    routing = _check_request(model, args, data, settings)
    circuit = _build(model, args, data, settings, routing)
    build_seconds = time.perf_counter() - build_start
    files = write_report(
        model,
        circuit,
        data,
        args.out,
        settings=report,
        command=command,
        parameters=_options_record(args, source),
        next_steps=_next_steps(source, circuit, args.out, build=True),
        build_seconds=build_seconds,
        progress=args.progress,
    )
    print(f"wrote {files.html} and {files.circuit}")
    print(
        f"circuit built in {build_seconds:.1f} s, report assembled in {files.seconds:.1f} s "
        f"({time.perf_counter() - started:.1f} s in all)"
    )
