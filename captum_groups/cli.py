"""``captum-groups``: build a circuit and write its report, from the command line.

Subcommands:

- ``captum-groups circuit --target 3 --out report`` builds NeurFlow's circuit
  of a class (:func:`~captum_groups.build_circuit`) and writes ``report.html``
  and ``circuit.json`` (:func:`~captum_groups.report.write_report`). Without
  ``--model`` it runs on the embedded digits CNN and digits data.
- ``captum-groups report circuit.json --model ... --data ...`` writes the
  report of a saved circuit again (the circuit JSON is read, never unpickled).
- ``captum-groups attribute --groups groups.json ...`` writes one PNG per
  group: the group's attribution map overlaid on each given image.

Bad usage exits with code 2 and a one-line message naming the option.
Command-line options map one to one onto ``build_circuit``'s keywords
through :data:`BUILD_CIRCUIT_KEYWORDS`.
"""

from __future__ import annotations

import argparse
import operator
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

# kornia, imported by Lucent, scripts functions with the deprecated torch.jit.script on import
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")

from . import __version__  # noqa: E402
from ._captum import SUPPORTED_METHODS  # noqa: E402
from ._data import Data, n_examples  # noqa: E402
from ._hooks import layer_outputs  # noqa: E402
from ._inputs import (  # noqa: E402
    DIGITS_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageOptions,
    OptionError,
    check_layers,
    check_target,
    load_circuit,
    load_data,
    load_groups,
    load_image_files,
    load_model,
    one_line,
    parse_device,
)
from .circuits import TARGET, Circuit, build_circuit  # noqa: E402
from .discovery import TopExemplars  # noqa: E402
from .report import write_report  # noqa: E402
from .report.assemble import images_at  # noqa: E402
from .viz import plot_group_exemplars  # noqa: E402
from .viz.exemplars import ATTRIBUTIONS  # noqa: E402

__all__ = ["BUILD_CIRCUIT_KEYWORDS", "build_circuit_keywords", "build_parser", "main"]

BUILD_CIRCUIT_KEYWORDS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "tau": ("tau", None),
    "k": ("k", None),
    "n_groups": ("n_groups", None),
    "n_steps": ("n_steps", None),
    "method": ("method", None),
    "scales": ("scales", tuple),
    "adaptive": ("adaptive", None),
    "tolerance": ("tolerance", None),
    "all_images": ("predicted_only", operator.not_),
    "thumbnails": ("thumbnails", None),
    "batch_size": ("batch_size", None),
    "internal_batch_size": ("internal_batch_size", None),
    "seed": ("random_state", None),
    "quiet": ("progress", operator.not_),
}
"""Command-line option (argparse dest) -> (``build_circuit`` keyword, conversion).

The one place where the command meets ``build_circuit``'s signature: the
model, ``--layers``, ``--target`` and the data are passed positionally, and
everything in this table as keywords.
"""


def build_circuit_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords for ``build_circuit`` from parsed options (see :data:`BUILD_CIRCUIT_KEYWORDS`).

    Examples
    --------
    >>> args = build_parser().parse_args(["circuit", "--target", "3", "--tau", "4", "--quiet"])
    >>> keywords = build_circuit_keywords(args)
    >>> keywords["tau"], keywords["progress"], keywords["random_state"]
    (4, False, 0)
    """
    keywords = {}
    for dest, (keyword, convert) in BUILD_CIRCUIT_KEYWORDS.items():
        value = getattr(args, dest)
        keywords[keyword] = convert(value) if convert is not None else value
    return keywords


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (and exit with code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {text}")
    return value


def _add_model_and_data(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model and data (without them: the embedded digits CNN on the digits test split)"
    )
    group.add_argument(
        "--model",
        metavar="SPEC",
        help="'torchvision:NAME' (e.g. torchvision:resnet18, built with weights=None) or "
        "'package.module:factory', a callable returning an nn.Module (the current folder "
        "is importable)",
    )
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="a state dict saved with torch.save, loaded with weights_only=True",
    )
    group.add_argument(
        "--data",
        metavar="PATH",
        help="an image folder in ImageFolder layout (root/<class>/<image>) or a tensor file "
        "(torch.save of (N, C, H, W) images, an (images, labels) pair or a dict with 'images')",
    )
    group.add_argument(
        "--image-size",
        type=_positive,
        default=224,
        metavar="PX",
        help="images are resized and centre-cropped to this side (default: 224)",
    )
    group.add_argument(
        "--mean",
        type=float,
        nargs="+",
        default=list(IMAGENET_MEAN),
        help="per-channel mean for normalising images (default: ImageNet's)",
    )
    group.add_argument(
        "--std",
        type=float,
        nargs="+",
        default=list(IMAGENET_STD),
        help="per-channel standard deviation (default: ImageNet's)",
    )
    group.add_argument("--no-normalize", action="store_true", help="leave image values in [0, 1]")
    group.add_argument("--grayscale", action="store_true", help="read images with one channel")
    group.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of random initialisation, grouping, fidelity draws, renderings (default: 0)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_report_options(parser: argparse.ArgumentParser, n_steps: bool) -> None:
    group = parser.add_argument_group("report")
    group.add_argument(
        "--render-steps",
        type=_non_negative,
        default=128,
        help="Lucent optimization steps per rendering; 0 leaves renderings out (default: 128)",
    )
    group.add_argument(
        "--render-size",
        type=_positive,
        metavar="PX",
        help="side of the renderings (default: the image side, at least 24, at most 128)",
    )
    group.add_argument(
        "--fidelity-draws",
        type=_positive,
        default=30,
        help="random draws per fidelity point (default: 30)",
    )
    group.add_argument(
        "--fidelity-images",
        type=_positive,
        default=512,
        help="most images to evaluate fidelity and shares on (default: 512)",
    )
    group.add_argument(
        "--fidelity-points",
        type=_positive,
        default=5,
        help="most points per fidelity curve (default: 5)",
    )
    if n_steps:
        group.add_argument(
            "--n-steps",
            type=_positive,
            default=32,
            help="integration steps for shares and attribution overlays (default: 32)",
        )


def _add_circuit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("circuit (the build_circuit parameters)")
    group.add_argument(
        "--target", type=int, required=True, help="the class (output index) to explain"
    )
    group.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="dotted layer names in forward order, lowest first, e.g. layer3.1 layer4.1 "
        f"(default for the digits CNN: {' '.join(DIGITS_LAYERS)})",
    )
    group.add_argument(
        "--tau", type=_positive, default=8, help="core neurons per target (NeurFlow: 16; default 8)"
    )
    group.add_argument(
        "--k",
        type=_positive,
        default=30,
        help="exemplar crops per neuron (NeurFlow: 50; default 30)",
    )
    group.add_argument(
        "--n-groups",
        type=_positive,
        help="groups per layer (default: chosen by silhouette score)",
    )
    group.add_argument(
        "--n-steps",
        type=_positive,
        default=24,
        help="integration steps, also for shares and overlays (NeurFlow: 50; default 24)",
    )
    group.add_argument(
        "--method",
        choices=SUPPORTED_METHODS,
        default="gausslegendre",
        help="integration rule (NeurFlow: gausslegendre; default gausslegendre)",
    )
    group.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0, 0.5, 0.25],
        help="crop sides as fractions of the image side (default: 1 0.5 0.25)",
    )
    group.add_argument("--adaptive", action="store_true", help="NeurFlow's optimal tau per target")
    group.add_argument(
        "--all-images",
        action="store_true",
        help="use every image, not only those the model predicts as the target",
    )
    group.add_argument(
        "--tolerance", type=float, default=0.05, help="error range of --adaptive (default: 0.05)"
    )
    group.add_argument(
        "--thumbnails",
        type=_positive,
        default=6,
        help="exemplar crops stored (and shown) per group (default: 6)",
    )
    group.add_argument(
        "--batch-size", type=_positive, default=256, help="crops per forward pass (default: 256)"
    )
    group.add_argument(
        "--internal-batch-size",
        type=_positive,
        help="rows (crops x steps) per integration pass (default: sized to the layer)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-groups`` argument parser."""
    parser = _Parser(
        prog="captum-groups",
        description="Circuits of neuron groups (NeurFlow) with a self-contained HTML report.",
        epilog="Start with: captum-groups circuit --target 3 --out report "
        "(the embedded digits CNN), then open report/report.html.",
    )
    parser.add_argument("--version", action="version", version=f"captum-groups {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    circuit = commands.add_parser(
        "circuit",
        help="build the circuit of a class and write report.html and circuit.json",
        description="Build NeurFlow's circuit of neuron groups for a class, top-down from its "
        "logit, and write OUT/report.html (open it in a browser) and OUT/circuit.json.",
        epilog="Examples: captum-groups circuit --target 3 --out report | captum-groups "
        "circuit --model torchvision:resnet18 --weights r18.pt --data images/ --layers "
        "layer3.1 layer4.1 --target 207 --out report",
    )
    _add_circuit_options(circuit)
    _add_model_and_data(circuit)
    _add_report_options(circuit, n_steps=False)
    circuit.add_argument("--out", default="report", help="output folder (default: report)")
    circuit.set_defaults(run=_run_circuit, parser=circuit)

    report = commands.add_parser(
        "report",
        help="write the report of a saved circuit.json again",
        description="Write OUT/report.html for a circuit saved as JSON; --model and --data "
        "must be those the circuit was built on.",
    )
    report.add_argument("circuit", help="a circuit.json written by 'captum-groups circuit'")
    _add_model_and_data(report)
    _add_report_options(report, n_steps=True)
    report.add_argument("--out", help="output folder (default: the circuit's folder)")
    report.set_defaults(run=_run_report, parser=report)

    attribute = commands.add_parser(
        "attribute",
        help="write attribution maps of groups on images as PNG overlays",
        description="For each group, write OUT/<group>.png: its attribution map (red raises "
        "the group, blue lowers it) over each image; and OUT/attributions.pt, the maps as a "
        "tensor (images, groups, *image shape) with the group names (torch.load with "
        "weights_only=True).",
    )
    attribute.add_argument(
        "--groups",
        required=True,
        metavar="FILE",
        help="JSON: a list of group dicts ({'layer': ..., 'indices': [...]}, optional "
        "'weights', 'name', 'label', 'reduction', 'dim'), a GroupSet file, or a circuit.json",
    )
    attribute.add_argument("--nodes", nargs="+", metavar="NAME", help="only these groups (names)")
    source = attribute.add_mutually_exclusive_group()
    source.add_argument("--images", nargs="+", metavar="FILE", help="image files")
    source.add_argument(
        "--indices",
        nargs="+",
        type=int,
        metavar="I",
        help="indices of images in --data (default: the first 8)",
    )
    attribute.add_argument(
        "--method",
        choices=sorted(ATTRIBUTIONS),
        default="integrated_gradients",
        help="attribution method (default: integrated_gradients)",
    )
    attribute.add_argument(
        "--n-steps", type=_positive, default=32, help="integration steps (default: 32)"
    )
    _add_model_and_data(attribute)
    attribute.add_argument(
        "--out", default="attributions", help="output folder (default: attributions)"
    )
    attribute.set_defaults(run=_run_attribute, parser=attribute)
    return parser


def _image_options(args: argparse.Namespace) -> ImageOptions:
    if args.no_normalize:
        return ImageOptions(args.image_size, None, None, args.grayscale)
    channels = 1 if args.grayscale else 3
    for option, values in (("--mean", args.mean), ("--std", args.std)):
        if len(values) not in (1, channels):
            raise OptionError(option, f"needs 1 or {channels} values, got {len(values)}")
    if any(s <= 0 for s in args.std):
        raise OptionError("--std", f"values must be positive, got {args.std}")
    mean, std = list(args.mean), list(args.std)
    if args.grayscale and args.mean == list(IMAGENET_MEAN):
        mean, std = [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    return ImageOptions(args.image_size, tuple(mean), tuple(std), args.grayscale)


def _source_options(args: argparse.Namespace) -> list[str]:
    """The options that name the model and the data, to repeat in follow-up commands."""
    options: list[str] = []
    for flag, value in (("--model", args.model), ("--weights", args.weights)):
        if value is not None:
            options += [flag, value]
    if args.data is not None:
        options += ["--data", args.data]
        if Path(args.data).is_dir():
            options += ["--image-size", str(args.image_size)]
            if args.no_normalize:
                options.append("--no-normalize")
            elif (args.mean, args.std) != (list(IMAGENET_MEAN), list(IMAGENET_STD)):
                options += ["--mean", *map(str, args.mean), "--std", *map(str, args.std)]
            if args.grayscale:
                options.append("--grayscale")
    if args.device is not None:
        options += ["--device", args.device]
    return options


def _prepare(args: argparse.Namespace) -> tuple[nn.Module, Data, torch.device]:
    """Seed, model (on its device), data and device, from the shared options."""
    device = parse_device(args.device)
    torch.manual_seed(args.seed)
    model = load_model(args.model, args.weights).to(device)
    data = load_data(args.data, _image_options(args))
    return model, data, device


def _option_of_build_error(message: str) -> str:
    for dest, (keyword, _) in BUILD_CIRCUIT_KEYWORDS.items():
        if message.startswith(f"{keyword}="):
            return "--" + dest.replace("_", "-")
    if "class" in message or "target" in message:
        return "--target"
    if "layer" in message:
        return "--layers"
    return "circuit"


def _next_steps(
    args: argparse.Namespace, circuit: Circuit, out: str, build: bool
) -> list[tuple[str, str]]:
    """Follow-up commands for the report, with the same model and data options."""
    source = _source_options(args)
    saved = f"{out}/circuit.json"
    steps = [
        (
            "Write the report again from the saved circuit (e.g. after giving its groups "
            "labels in circuit.json)",
            shlex.join(["captum-groups", "report", saved, *source, "--out", out]),
        )
    ]
    into_target = circuit.in_edges(TARGET)
    if into_target:
        strongest = max(into_target, key=lambda node: abs(into_target[node]))
        command = ["captum-groups", "attribute", "--groups", saved, "--nodes", strongest]
        command += [*source, *"--indices 0 1 2 3 --out".split(), f"{out}/attributions"]
        steps.append(
            (f"Attribution maps of group {strongest} on chosen images", shlex.join(command))
        )
    if build and isinstance(circuit.target, int):
        command = ["captum-groups", "circuit", "--target", str(circuit.target), "--layers"]
        command += [*circuit.layers, *source, *"--tau 16 --k 50 --n-steps 50 --out".split()]
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


def _report_keywords(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "render_size": args.render_size,
        "render_steps": args.render_steps,
        "fidelity_draws": args.fidelity_draws,
        "fidelity_images": args.fidelity_images,
        "fidelity_points": args.fidelity_points,
        "n_steps": args.n_steps,
        "random_state": args.seed,
        "progress": not args.quiet,
    }


def _options_record(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key: value
        for key, value in sorted(vars(args).items())
        if key not in ("run", "parser", "command") and value is not None
    }


def _run_circuit(args: argparse.Namespace, command: str, started: float) -> None:
    model, data, device = _prepare(args)
    if args.layers is None:
        if args.model is not None:
            raise OptionError(
                "--layers",
                "is required with --model (dotted names, lowest first, e.g. layer3.1 layer4.1)",
            )
        args.layers = list(DIGITS_LAYERS)
    check_layers(model, args.layers)
    check_target(model, _first_image(data).to(device), args.target)
    build_start = time.perf_counter()
    try:
        circuit = build_circuit(
            model, args.layers, args.target, data, **build_circuit_keywords(args)
        )
    except ValueError as error:
        raise OptionError(_option_of_build_error(str(error)), str(error)) from None
    except OSError as error:  # PIL's UnidentifiedImageError is an OSError
        raise OptionError("--data", f"cannot read an image: {error}") from None
    build_seconds = time.perf_counter() - build_start
    files = write_report(
        model,
        circuit,
        data,
        args.out,
        command=command,
        parameters=_options_record(args),
        next_steps=_next_steps(args, circuit, args.out, build=True),
        build_seconds=build_seconds,
        **_report_keywords(args),
    )
    print(f"wrote {files.html} and {files.circuit}")
    print(
        f"circuit built in {build_seconds:.1f} s, report generated in {files.seconds:.1f} s "
        f"({time.perf_counter() - started:.1f} s in all)"
    )


def _first_image(data: Data) -> Tensor:
    """The first image of the data, for checks before the build (unreadable files named)."""
    try:
        return images_at(data, [0])
    except OSError as error:  # PIL's UnidentifiedImageError is an OSError
        raise OptionError("--data", f"cannot read an image: {error}") from None


def _check_circuit_fits(model: nn.Module, circuit: Circuit, data: Data, device) -> None:
    check_layers(model, circuit.layers, "--model")
    size = n_examples(data)
    indices = [i for items in circuit.exemplars.values() for i, _ in items]
    if size is not None and indices and max(indices) >= size:
        raise OptionError(
            "--data",
            f"the circuit's exemplars refer to image {max(indices)}, but the data hold {size} "
            f"images; pass the data the circuit was built on",
        )
    if isinstance(circuit.target, int):
        check_target(model, images_at(data, [0]).to(device), circuit.target)


def _run_report(args: argparse.Namespace, command: str, started: float) -> None:
    circuit = load_circuit(args.circuit)
    model, data, device = _prepare(args)
    _check_circuit_fits(model, circuit, data, device)
    out = args.out if args.out is not None else str(Path(args.circuit).parent)
    files = write_report(
        model,
        circuit,
        data,
        out,
        command=command,
        parameters=_options_record(args),
        next_steps=_next_steps(args, circuit, out, build=False),
        **_report_keywords(args),
    )
    print(f"wrote {files.html} and {files.circuit}")
    print(
        f"report generated in {files.seconds:.1f} s ({time.perf_counter() - started:.1f} s in all)"
    )


def _file_stem(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "group"
    unique, count = stem, 1
    while unique in taken:
        count += 1
        unique = f"{stem}-{count}"
    taken.add(unique)
    return unique


def _chosen_images(args: argparse.Namespace) -> Tensor:
    if args.images:
        return load_image_files(args.images, _image_options(args))
    data = load_data(args.data, _image_options(args))
    size = n_examples(data)
    indices = args.indices if args.indices is not None else list(range(min(8, size or 8)))
    if size is not None and any(not 0 <= i < size for i in indices):
        raise OptionError("--indices", f"must be between 0 and {size - 1}, got {indices}")
    try:
        return images_at(data, indices)
    except OSError as error:
        raise OptionError("--data", f"cannot read an image: {error}") from None


def _run_attribute(args: argparse.Namespace, command: str, started: float) -> None:
    groups = load_groups(args.groups, args.nodes)
    device = parse_device(args.device)
    torch.manual_seed(args.seed)
    model = load_model(args.model, args.weights).to(device)
    check_layers(model, [str(g.layer) for g in groups], "--groups")
    images = _chosen_images(args).to(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = torch.tensor([[0, 0, images.shape[-2], images.shape[-1]]] * len(images))
    taken: set[str] = set()
    maps = []
    for group in groups:
        try:
            values = group(layer_outputs(model, images, group.resolve(model))).cpu()
        except ValueError as error:
            raise OptionError("--groups", f"group {group.name}: {error}") from None
        method = ATTRIBUTIONS[args.method](model, group.layer)
        steps = {"n_steps": args.n_steps} if args.method == "integrated_gradients" else {}
        maps.append(method.attribute(images, group, **steps).detach().cpu())
        exemplars = TopExemplars(values[None], torch.arange(len(images))[None], full[None])
        figure = plot_group_exemplars(
            exemplars,
            images,
            [group],
            n=len(images),
            model=model,
            attribution=args.method,
            n_steps=args.n_steps,
        )
        path = out / f"{_file_stem(group.name or 'group', taken)}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        print(f"wrote {path}")
    raw = out / "attributions.pt"
    torch.save(
        {
            "groups": [group.name for group in groups],
            "method": args.method,
            "images": images.cpu(),
            "attributions": torch.stack(maps, 1),
        },
        raw,
    )
    print(f"wrote {raw} (attributions shaped (images, groups, *image shape))")
    print(f"{len(groups)} groups on {len(images)} images in {time.perf_counter() - started:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``captum-groups`` with ``argv`` (the process's arguments by default); 0 on success."""
    started = time.perf_counter()
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    command = shlex.join(["captum-groups", *arguments])
    try:
        args.run(args, command, started)
    except OptionError as error:
        args.parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
