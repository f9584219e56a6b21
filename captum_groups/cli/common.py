"""What every command shares: the one-line-error parser, the model/data/``--out`` options,
the model and data loaded, refusals mapped to options, follow-up commands."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from .. import ParameterError
from ..circuits import (
    TARGET,
    Circuit,
)
from ..data import Data
from ..files import check_folder_path
from ..report import ReportSettings
from ..report.assemble import images_at
from .defaults import CIRCUIT_FIELDS, IMAGE_OPTIONS, PARAMETER_OPTIONS, REPORT_FIELDS, SOURCE_FIELDS
from .inputs import (
    Source,
)
from .options import (
    OptionError,
    add_deprecated_alias,
    add_settings_options,
    command_options,
    flag_of,
    one_line,
    settings_from_args,
)


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (and exit with code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _add_common(parser: argparse.ArgumentParser, out: str | None) -> None:
    """Model and data options, ``--out`` and ``--progress``, and the former ``--quiet``."""
    group = parser.add_argument_group(
        "model and data (without them: the embedded digits CNN on the digits test split)"
    )
    add_settings_options(group, Source)
    parser.add_argument(
        "--out",
        default=out,
        help=f"output folder (default: {out or 'the circuit file' + chr(39) + 's folder'})",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show progress bars (default: shown)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="PyTorch threads (default: the CPU cores not busy with other work, as the load "
        "average says; OMP_NUM_THREADS if set)",
    )
    deprecated = parser.add_argument_group("deprecated options (removed in the next release)")
    add_deprecated_alias(deprecated, "--quiet", "--no-progress", "progress", constant=False)
    add_deprecated_alias(deprecated, "--seed", "--random-state", "random_state", type=int)
    return None


def _add_report_options(parser: argparse.ArgumentParser, exclude: tuple[str, ...]) -> None:
    group = parser.add_argument_group("report (ReportSettings)")
    add_settings_options(group, ReportSettings, exclude=exclude)
    deprecated = parser.add_argument_group("deprecated report options")
    for old, new in (("draws", "n-draws"), ("images", "max-images"), ("points", "n-points")):
        dest = new.replace("-", "_")
        add_deprecated_alias(deprecated, f"--fidelity-{old}", f"--{new}", dest, type=int)


def _source(args: argparse.Namespace) -> Source:
    return settings_from_args(Source, args, SOURCE_FIELDS)


def _prepare(source: Source, seed: int | None) -> tuple[nn.Module, Data, torch.device]:
    """Model (seeded initialisation, on its device), data and device."""
    device = source.torch_device()
    torch.manual_seed(seed or 0)
    return source.load_model().to(device), source.load_data(), device


def _option_of(parameter: str) -> str:
    """The option of a refused parameter: its settings field's, or the command's own."""
    name = parameter.split(".")[-1]
    if name in CIRCUIT_FIELDS or name in REPORT_FIELDS or name in SOURCE_FIELDS:
        return flag_of(name)
    return PARAMETER_OPTIONS.get(name, "circuit")


def _next_steps(source: Source, circuit: Circuit, out: str, build: bool) -> list[tuple[str, str]]:
    """Follow-up commands for the report, with the same model and data options."""
    given = command_options(source, SOURCE_FIELDS)
    saved = f"{out}/circuit.json"
    steps = [
        (
            "Write the report again from the saved circuit (e.g. after giving its groups "
            "labels in circuit.json)",
            shlex.join(["captum-groups", "report", saved, *given, "--out", out]),
        )
    ]
    into_target = circuit.in_edges(TARGET)
    if into_target:
        strongest = max(into_target, key=lambda node: abs(into_target[node]))
        command = ["captum-groups", "attribute", "--groups", saved, "--nodes", strongest]
        command += [*given, *"--indices 0 1 2 3 --out".split(), f"{out}/attributions"]
        steps.append(
            (f"Attribution maps of group {strongest} on chosen images", shlex.join(command))
        )
    if build and isinstance(circuit.target, int):
        command = ["captum-groups", "circuit", "--target", str(circuit.target), "--layers"]
        command += [*circuit.layers, *given, *"--tau 16 --k 50 --n-steps 50 --out".split()]
        steps.append(
            (
                "A finer circuit with NeurFlow's own settings (slower)",
                shlex.join([*command, f"{out}-neurflow"]),
            )
        )
    steps.append(
        (
            "Use the circuit in Python (JSON, no pickle)",
            "from pathlib import Path\nfrom captum_groups import Circuit\n"
            f"circuit = Circuit.from_json(Path({saved!r}).read_text())",
        )
    )
    return steps


def _options_record(args: argparse.Namespace, source: Source) -> dict[str, Any]:
    """The command's options that took part in it, for the report's record: not the
    image options when no image file was read (the embedded digits, a tensor file), and
    not options left unset."""
    images_read = source.data is not None and Path(source.data).is_dir()
    return {
        key: value
        for key, value in sorted(vars(args).items())
        if key not in ("run", "parser", "command")
        and value is not None
        and (images_read or key not in IMAGE_OPTIONS)
    }


def _check_out(out: str) -> None:
    """``--out`` must be a folder (or nothing yet): checked before any work is done."""
    try:
        check_folder_path(out, "--out")
    except ParameterError as error:
        raise OptionError("--out", str(error)) from None


def _first_image(data: Data) -> Tensor:
    """The first image of the data, for checks before the build (an unreadable file is
    refused by ``data``, which :func:`main` maps to ``--data``)."""
    return images_at(data, [0])
