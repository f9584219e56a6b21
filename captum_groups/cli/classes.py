"""``captum-groups classes``: which classes the model predicts on the data, and how often."""

from __future__ import annotations

import argparse

from ..circuits import (
    route_classes,
)
from .common import _add_common, _prepare, _source
from .options import (
    OptionError,
)


def _add_classes_command(commands: argparse._SubParsersAction) -> None:
    classes = commands.add_parser(
        "classes",
        help="list the classes the model predicts on the data, with their image counts",
        description="Route the data once through the model and list each class it predicts, "
        "with how many images, most first: the targets whose circuits have images to build "
        "from.",
    )
    classes.add_argument(
        "--top", type=int, default=20, help="how many classes to list (default: 20)"
    )
    classes.add_argument(
        "--batch-size", type=int, default=256, help="images per forward pass (default: 256)"
    )
    _add_common(classes, None)
    classes.set_defaults(run=_run_classes, parser=classes)


def _run_classes(args: argparse.Namespace, command: str, started: float) -> None:
    if args.top < 1 or args.batch_size < 1:
        flag = "--top" if args.top < 1 else "--batch-size"
        raise OptionError(flag, "must be a positive integer")
    source = _source(args)
    model, data, device = _prepare(source, 0)
    routing = route_classes(model, data, args.batch_size, progress=args.progress)
    counts = routing.counts()
    total = sum(counts.values())
    print(f"{len(counts)} classes predicted on {total} images; the {min(args.top, len(counts))} "
          f"most predicted:")  # fmt: skip
    print(f"{'class':>8s} {'images':>8s} {'share':>7s}")
    for target, count in counts.most_common(args.top):
        print(f"{target:8d} {count:8d} {count / total:7.1%}")
    print(f"build one: captum-groups circuit --target {counts.most_common(1)[0][0]} ...")
