"""The parser of every command, the thread count, and ``main``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence

import torch

from .. import ParameterError, __version__
from .atlas import _add_atlas_command
from .attribute import _add_attribute_command
from .circuit import _add_circuit_command
from .classes import _add_classes_command
from .common import _Parser
from .options import (
    OptionError,
)
from .report import _add_report_command


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-groups`` argument parser.

    Examples
    --------
    >>> parser = build_parser()
    >>> args = parser.parse_args(["circuit", "--target", "3", "--out", "report"])
    >>> args.target, args.out, args.tau  # the command's lighter tau (the API's is 16)
    (3, 'report', 8)
    """
    parser = _Parser(
        prog="captum-groups",
        description="Circuits of neuron groups (NeurFlow) with a self-contained HTML report.",
        epilog="Start with: captum-groups circuit --target 3 --out report "
        "(the embedded digits CNN), then open report/report.html.",
    )
    parser.add_argument("--version", action="version", version=f"captum-groups {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_circuit_command(commands)
    _add_report_command(commands)
    _add_attribute_command(commands)
    _add_atlas_command(commands)
    _add_classes_command(commands)
    return parser


def threads(given: int | None) -> int:
    """The PyTorch threads a command uses: ``--threads``, else ``OMP_NUM_THREADS``, else the
    cores this process may use that other work does not keep busy (the 1-minute load average).

    On a 2-core machine with another job running, one thread ran the default command in half
    the time of two (PyTorch's threads wait on each other when a core is taken).

    Examples
    --------
    >>> threads(2)  # --threads 2
    2
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if given is not None:
        if given < 1:
            raise OptionError("--threads", f"must be a positive integer, got {given}")
        if given > cores:
            # more threads than cores only makes them wait on each other (20x slower seen)
            print(
                f"warning: --threads {given} is more than the {cores} cores this process may "
                f"use; using {cores}",
                file=sys.stderr,
            )
            return cores
        return given
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, cores - round(os.getloadavg()[0]))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``captum-groups`` with ``argv`` (the process's arguments by default); 0 on success.

    Examples
    --------
    >>> main(["classes", "--top", "3", "--no-progress"])  # doctest: +ELLIPSIS
    10 classes predicted on 450 images; the 3 most predicted:
    ...
    0
    """
    started = time.perf_counter()
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    command = shlex.join(["captum-groups", *arguments])
    try:
        torch.set_num_threads(threads(args.threads))
        code = args.run(args, command, started)
    except OptionError as error:
        args.parser.error(str(error))
    except ParameterError as error:
        if error.parameter != "data":  # an image of --data that cannot be read, in any pass
            raise
        args.parser.error(str(OptionError("--data", str(error))))
    except KeyboardInterrupt:
        # what was cut off was not written (files are written whole, the report last)
        print(f"{parser.prog}: interrupted; nothing half-written was left", file=sys.stderr)
        return 130
    return code or 0
