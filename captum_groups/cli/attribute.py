"""``captum-groups attribute``: one attribution picture per group of a groups file."""

from __future__ import annotations

import argparse
import io
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import layer_activations
from ..circuits import (
    CircuitSettings,
)
from ..data import n_examples
from ..discovery import TopExemplars
from ..files import write_atomic
from ..groups import NeuronGroup
from ..report.assemble import images_at
from ..viz import plot_group_exemplars
from ..viz.exemplars import ATTRIBUTIONS
from .common import _add_common, _check_out, _source
from .defaults import CLI_DEFAULTS
from .inputs import (
    Source,
    load_groups,
    load_image_files,
)
from .options import (
    OptionError,
    add_deprecated_alias,
    add_settings_options,
    settings_from_args,
)


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
        values = group(layer_activations(model, group.layer, images)).cpu()
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
    for group in groups:
        try:
            group.resolve(model)
        except ValueError as error:
            raise OptionError("--groups", str(error)) from None
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
