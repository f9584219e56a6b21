"""``captum-groups``: build a circuit and write its report, from the command line.

Subcommands:

- ``captum-groups circuit --target 3 --out report`` builds NeurFlow's circuit
  of a class (:func:`~captum_groups.build_circuit`) and writes ``report.html``
  and ``circuit.json`` (:func:`~captum_groups.report.write_report`). Without
  ``--model`` it runs on the embedded digits CNN and digits data.
- ``captum-groups report circuit.json --model ... --data ...`` writes the
  report of a saved circuit again (the circuit JSON is read, never unpickled),
  with the integration steps and seed the circuit was built with.
- ``captum-groups attribute --groups groups.json ...`` writes one PNG per
  group: the group's attribution map overlaid on each given image.

The options are made from the settings classes (:class:`~captum_groups.CircuitSettings`,
:class:`~captum_groups.report.ReportSettings`, :class:`~captum_groups._inputs.Source`):
one option per field, with the field's name, doc and default, except the few
deliberate differences of :data:`CLI_DEFAULTS`, which ``--help`` shows. Bad
usage exits with code 2 and a one-line message naming the option; a refused
setting is mapped to its option by the parameter's name, never by the text
of the message.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

# kornia, imported by Lucent, scripts functions with the deprecated torch.jit.script on import
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")

from . import __version__  # noqa: E402
from ._checks import ParameterError  # noqa: E402
from ._cli_options import (  # noqa: E402
    OptionError,
    add_deprecated_alias,
    add_settings_options,
    command_options,
    flag_of,
    one_line,
    settings_from_args,
)
from ._data import Data, n_examples  # noqa: E402
from ._files import check_folder_path, write_atomic  # noqa: E402
from ._hooks import LayerCapture, layer_outputs, record  # noqa: E402
from ._inputs import (  # noqa: E402
    DIGITS_LAYERS,
    Source,
    check_layers,
    check_target,
    check_target_index,
    load_circuit,
    load_groups,
    load_image_files,
)
from .circuits import (  # noqa: E402
    TARGET,
    Circuit,
    CircuitSettings,
    ClassRouting,
    build_circuit,
    route_classes,
)
from .circuits.build import check_precision, none_predicted  # noqa: E402
from .discovery import TopExemplars  # noqa: E402
from .groups import NeuronGroup  # noqa: E402
from .report import ReportSettings, build_atlas, write_report  # noqa: E402
from .report.assemble import images_at  # noqa: E402
from .viz import plot_group_exemplars  # noqa: E402
from .viz.exemplars import ATTRIBUTIONS  # noqa: E402

__all__ = ["CLI_DEFAULTS", "COMMAND_OPTIONS", "build_parser", "main"]

CLI_DEFAULTS: dict[str, dict[str, tuple[Any, str]]] = {
    "circuit": {
        "tau": (8, "a lighter first circuit (NeurFlow: 16)"),
        "k": (30, "a lighter first circuit (NeurFlow: 50)"),
        "thumbnails": (6, "one row of exemplars per card in the report"),
        "random_state": (0, "a command gives the same output every time"),
    },
    "attribute": {
        "n_steps": (32, "smoother maps than the circuit's scores need"),
        "random_state": (0, "a command gives the same output every time"),
    },
}
CLI_DEFAULTS["atlas"] = CLI_DEFAULTS["circuit"]
"""The one place where a command's default differs from the API's: command -> field ->
(default, why). ``--help`` shows both defaults."""

REPORT_FIELDS_OF_CIRCUIT = ("n_steps", "random_state", "batch_size")
"""Report settings the ``circuit`` command takes from the circuit's settings (one option each)."""

COMMAND_OPTIONS: dict[str, tuple[str, ...]] = {
    "circuit": ("target", "layers", "out", "progress", "threads"),
    "report": ("circuit", "out", "progress", "threads"),
    "attribute": (
        "groups",
        "nodes",
        "images",
        "indices",
        "attribution",
        "out",
        "progress",
        "threads",
    ),
    "classes": ("top", "batch_size", "out", "progress", "threads"),
    "atlas": (
        "targets",
        "layers",
        "backend",
        "address",
        "workers",
        "resume",
        "reports",
        "out",
        "progress",
        "threads",
    ),
}
"""Per command, the options that are not settings fields: what to explain, where to write."""

PARAMETER_OPTIONS = {
    "target": "--target",
    "targets": "--target",
    "layers": "--layers",
    "out": "--out",
    "workers": "--workers",
    "backend": "--backend",
}
"""Parameters of build_circuit that are options but not settings."""


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


def _add_circuit_command(commands: argparse._SubParsersAction) -> None:
    circuit = commands.add_parser(
        "circuit",
        help="build the circuit of a class and write report.html and circuit.json",
        description="Build NeurFlow's circuit of neuron groups for a class, top-down from its "
        "logit, and write OUT/report.html (open it in a browser) and OUT/circuit.json.",
        epilog="Examples: captum-groups circuit --target 3 --out report | captum-groups "
        "circuit --model torchvision:resnet18 --weights r18.pt --data images/ --layers "
        "layer3.1 layer4.1 --target 207 --out report",
    )
    group = circuit.add_argument_group("circuit (CircuitSettings, and what to explain)")
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
    add_settings_options(group, CircuitSettings, differences=CLI_DEFAULTS["circuit"])
    add_deprecated_alias(
        group, "--all-images", "--no-predicted-only", "predicted_only", constant=False
    )
    _add_common(circuit, "report")
    _add_report_options(circuit, exclude=REPORT_FIELDS_OF_CIRCUIT)
    circuit.set_defaults(run=_run_circuit, parser=circuit)


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


def _add_attribute_command(commands: argparse._SubParsersAction) -> None:
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
        "--attribution",
        choices=sorted(ATTRIBUTIONS),
        default="integrated_gradients",
        help="attribution method (default: integrated_gradients)",
    )
    add_settings_options(
        attribute,
        CircuitSettings,
        only=("n_steps", "random_state"),
        differences=CLI_DEFAULTS["attribute"],
    )
    _add_common(attribute, "attributions")
    add_deprecated_alias(attribute, "--method", "--attribution", "attribution", type=str)
    attribute.set_defaults(run=_run_attribute, parser=attribute)


def _add_atlas_command(commands: argparse._SubParsersAction) -> None:
    atlas = commands.add_parser(
        "atlas",
        help="build the circuit of every class, across processes or machines, with an index",
        description="Route the data once, build each class's circuit on its own images and "
        "write OUT/classes/<class>/circuit.json (and report.html with --reports) and the index "
        "OUT/atlas.html. One process by default; under torchrun the ranks share the classes "
        "(torchrun --standalone --nproc_per_node=N -m captum_groups atlas ...); --backend ray "
        "runs on a Ray cluster.",
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
        help="keep the classes already in OUT with the same settings; build the rest",
    )
    jobs.add_argument("--reports", action="store_true", help="also write each class's report.html")
    _add_common(atlas, "atlas")
    _add_report_options(atlas, exclude=REPORT_FIELDS_OF_CIRCUIT)
    atlas.set_defaults(run=_run_atlas, parser=atlas)


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
    _add_circuit_command(commands)
    _add_report_command(commands)
    _add_attribute_command(commands)
    _add_atlas_command(commands)
    _add_classes_command(commands)
    return parser


SOURCE_FIELDS = tuple(Source.__dataclass_fields__)
CIRCUIT_FIELDS = tuple(
    name
    for name, item in CircuitSettings.__dataclass_fields__.items()
    if not item.metadata["cli"].get("skip")
)
REPORT_FIELDS = tuple(ReportSettings.__dataclass_fields__)


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


IMAGE_OPTIONS = ("image_size", "mean", "std", "normalize", "grayscale")
"""How image files are read: used only when --data is an image folder."""


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


def _route_target(
    model: nn.Module, data: Data, settings: CircuitSettings, target: int, progress: bool
) -> ClassRouting:
    """Each image's predicted class, before any crop is made: a target that no image is
    predicted as is refused now (the build would find out only after a whole pass), and the
    build reads the target's images from this routing instead of predicting again."""
    routing = route_classes(model, data, settings.batch_size, progress=progress)
    counts = routing.counts()
    if target not in counts:
        message = none_predicted(target, counts)
        if not settings.predicted_only:
            message = (
                f"the model predicts class {target} for none of the images, so the report has "
                f"no image to measure the circuit's fidelity on; the model predicts "
                + ", ".join(f"{c} ({n})" for c, n in counts.most_common(8))
            )
        raise OptionError("--target", message)
    return routing


def _build(
    model: nn.Module,
    args: argparse.Namespace,
    data: Data,
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
    model, data, device = _prepare(source, settings.random_state)
    if args.layers is None:
        if source.model is not None:
            raise OptionError(
                "--layers",
                "is required with --model (dotted names, lowest first, e.g. layer3.1 layer4.1)",
            )
        args.layers = list(DIGITS_LAYERS)
    check_layers(model, args.layers)
    try:
        check_precision(model)
    except ParameterError as error:
        raise OptionError("--model", str(error)) from None
    check_target(model, _first_image(data).to(device), args.target)
    _check_out(args.out)
    build_start = time.perf_counter()
    routing = _route_target(model, data, settings, args.target, args.progress)
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


def _first_image(data: Data) -> Tensor:
    """The first image of the data, for checks before the build (an unreadable file is
    refused by ``data``, which :func:`main` maps to ``--data``)."""
    return images_at(data, [0])


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


FILE_STEM_LENGTH = 80
"""The most characters of a file name made from a group's name (file systems allow 255 bytes)."""


def _file_stem(name: str, taken: set[str]) -> str:
    """A file name from a group name: letters, digits, ``_.-`` only, at most
    :data:`FILE_STEM_LENGTH` characters, unique among ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:FILE_STEM_LENGTH] or "group"
    unique, count = stem, 1
    while unique in taken:
        count += 1
        unique = f"{stem}-{count}"
    taken.add(unique)
    return unique


def _chosen_images(args: argparse.Namespace, source: Source) -> Tensor:
    if args.images:
        return load_image_files(args.images, source.image_options())
    data = source.load_data()
    size = n_examples(data)
    indices = args.indices if args.indices is not None else list(range(min(8, size or 8)))
    if size is not None and any(not 0 <= i < size for i in indices):
        raise OptionError("--indices", f"must be between 0 and {size - 1}, got {indices}")
    return images_at(data, indices)


def _group_picture(
    model: nn.Module, images: Tensor, group: NeuronGroup, attribution: str, n_steps: int
) -> tuple[Tensor, Any]:
    """A group's attribution maps on the images, and the figure of them over the images."""
    try:
        values = group(layer_outputs(model, images, group.resolve(model))).cpu()
    except ValueError as error:
        raise OptionError("--groups", f"group {group.name}: {error}") from None
    method = ATTRIBUTIONS[attribution](model, group.layer)
    steps = {"n_steps": n_steps} if attribution == "integrated_gradients" else {}
    maps = method.attribute(images, group, **steps).detach().cpu()
    full = torch.tensor([[0, 0, images.shape[-2], images.shape[-1]]] * len(images))
    exemplars = TopExemplars(values[None], torch.arange(len(images))[None], full[None])
    figure = plot_group_exemplars(
        exemplars,
        images,
        [group],
        n=len(images),
        model=model,
        attribution=attribution,
        n_steps=n_steps,
    )
    return maps, figure


def _run_attribute(args: argparse.Namespace, command: str, started: float) -> None:
    if args.attribution not in ATTRIBUTIONS:
        raise OptionError("--attribution", f"must be one of {sorted(ATTRIBUTIONS)}")
    settings = settings_from_args(CircuitSettings, args, ("n_steps", "random_state"))
    _check_out(args.out)
    groups = load_groups(args.groups, args.nodes)
    source = _source(args)
    device = source.torch_device()
    torch.manual_seed(settings.random_state or 0)
    model = source.load_model().to(device)
    check_layers(model, [str(g.layer) for g in groups], "--groups")
    images = _chosen_images(args, source).to(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    maps = []
    for group in groups:
        group_maps, figure = _group_picture(
            model, images, group, args.attribution, settings.n_steps
        )
        maps.append(group_maps)
        path = out / f"{_file_stem(group.name or 'group', taken)}.png"
        picture = io.BytesIO()
        figure.savefig(picture, format="png", dpi=120, bbox_inches="tight")
        write_atomic(path, picture.getvalue())
        print(f"wrote {path}")
    raw, saved = out / "attributions.pt", io.BytesIO()
    torch.save(
        {
            "groups": [group.name for group in groups],
            "method": args.attribution,
            "images": images.cpu(),
            "attributions": torch.stack(maps, 1),
        },
        saved,
    )
    write_atomic(raw, saved.getvalue())
    print(f"wrote {raw} (attributions shaped (images, groups, *image shape))")
    print(f"{len(groups)} groups on {len(images)} images in {time.perf_counter() - started:.1f} s")


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


def _run_atlas(args: argparse.Namespace, command: str, started: float) -> int:
    source = _source(args)
    settings = settings_from_args(CircuitSettings, args, CIRCUIT_FIELDS)
    own = [name for name in REPORT_FIELDS if name not in REPORT_FIELDS_OF_CIRCUIT]
    report = settings_from_args(ReportSettings, args, own)
    if args.layers is None:
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


def threads(given: int | None) -> int:
    """The PyTorch threads a command uses: ``--threads``, else ``OMP_NUM_THREADS``, else the
    cores this process may use that other work does not keep busy (the 1-minute load average).

    On a 2-core machine with another job running, one thread ran the default command in half
    the time of two (PyTorch's threads wait on each other when a core is taken).
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
    """Run ``captum-groups`` with ``argv`` (the process's arguments by default); 0 on success."""
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


if __name__ == "__main__":
    sys.exit(main())
