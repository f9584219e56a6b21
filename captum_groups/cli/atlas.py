"""``captum-groups atlas``: the circuits of every class, across processes and machines."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from .. import ParameterError
from ..circuits import (
    CircuitSettings,
)
from ..report import ReportSettings, build_atlas
from .common import _add_common, _add_report_options, _option_of, _source
from .defaults import CIRCUIT_FIELDS, CLI_DEFAULTS, REPORT_FIELDS, REPORT_FIELDS_OF_CIRCUIT
from .inputs import (
    DIGITS_LAYERS,
    Source,
)
from .options import (
    OptionError,
    add_settings_options,
    settings_from_args,
)


def _add_atlas_command(commands: argparse._SubParsersAction) -> None:
    atlas = commands.add_parser(
        "atlas",
        help="build the circuit of every class, across processes or machines, with an index",
        description="Route the data once, build each class's circuit on its own images and "
        "write OUT/classes/<class>/circuit.json (and report.html with --reports) and the index "
        "OUT/atlas.html. One process by default; under torchrun the ranks share the classes "
        "(torchrun --standalone --nproc_per_node=N -m captum_groups atlas ...); --backend ray "
        "runs on a Ray cluster. With --corrupt, each class's circuit is a transformer's circuit "
        "through the residual stream (no --layers).",
        epilog="Examples: captum-groups atlas --out atlas | torchrun --standalone "
        "--nproc_per_node=2 -m captum_groups atlas --out atlas | captum-groups atlas "
        "--backend ray --address auto --model torchvision:resnet50 --weights r50.pt --data "
        "images/ --layers layer4.0 layer4.1 layer4.2 --out atlas",
    )
    group = atlas.add_argument_group("circuits (CircuitSettings, and which classes)")
    group.add_argument(
        "--targets",
        type=int,
        nargs="+",
        metavar="CLASS",
        help="the classes (default: every class the model predicts on the data)",
    )
    group.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="dotted layer names in forward order, lowest first "
        f"(default for the digits CNN: {' '.join(DIGITS_LAYERS)})",
    )
    add_settings_options(group, CircuitSettings, differences=CLI_DEFAULTS["atlas"])
    jobs = atlas.add_argument_group("where it runs")
    jobs.add_argument(
        "--backend",
        choices=("local", "torch", "ray"),
        help="local (one process), torch (the ranks of torchrun) or ray (default: torch "
        "under torchrun, else local)",
    )
    jobs.add_argument("--address", help="the Ray cluster's address (default: a local Ray)")
    jobs.add_argument("--workers", type=int, help="Ray actors (default: one per CPU)")
    jobs.add_argument(
        "--resume",
        action="store_true",
        help="keep the classes already in OUT that were built from the same inputs (settings, "
        "layers, class, model weights, images) and are complete; build the rest",
    )
    jobs.add_argument("--reports", action="store_true", help="also write each class's report.html")
    _add_common(atlas, "atlas")
    _add_report_options(atlas, exclude=REPORT_FIELDS_OF_CIRCUIT)
    atlas.set_defaults(run=_run_atlas, parser=atlas)


def _run_atlas(args: argparse.Namespace, command: str, started: float) -> int:
    source = _source(args)
    settings = settings_from_args(CircuitSettings, args, CIRCUIT_FIELDS)
    own = [name for name in REPORT_FIELDS if name not in REPORT_FIELDS_OF_CIRCUIT]
    report = settings_from_args(ReportSettings, args, own)
    if args.layers is None and settings.corrupt is not None:
        args.layers = []  # a circuit through the stream has no layers to choose
    elif args.layers is None:
        if source.model is not None:
            raise OptionError("--layers", "is required with --model (dotted names, lowest first)")
        args.layers = list(DIGITS_LAYERS)
    torch.manual_seed(settings.random_state or 0)
    try:
        atlas = build_atlas(
            _SeededModel(source, settings.random_state or 0),
            args.layers,
            source.load_data,
            args.out,
            targets=args.targets,
            settings=settings,
            report=report,
            reports=args.reports,
            resume=args.resume,
            backend=args.backend,
            address=args.address,
            workers=args.workers,
            device=source.device,
            progress=args.progress,
        )
    except ParameterError as error:
        option = _option_of(error.parameter)
        raise OptionError("--targets" if option == "--target" else option, str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {atlas.html} and {len(atlas.rows)} circuits in {atlas.html.parent}")
        for failure in atlas.failures:
            print(f"class {failure['target']} failed: {failure['error']}", file=sys.stderr)
        print(
            f"atlas built in {atlas.seconds:.1f} s ({time.perf_counter() - started:.1f} s in all)"
        )
    return 1 if atlas.failures else 0


@dataclass(frozen=True)
class _SeededModel:
    """A model factory (for every worker) that seeds its random initialisation first."""

    source: Source
    seed: int

    def __call__(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return self.source.load_model()
