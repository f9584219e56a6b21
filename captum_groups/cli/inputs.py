"""What the command line names, turned into objects: models, weights, data, groups, circuits.

Used by :mod:`captum_groups.cli`. Every loader raises :class:`OptionError`
naming the option at fault, so the command can print a one-line usage error.

- A model spec is ``torchvision:NAME`` (a torchvision model built with
  ``weights=None``) or ``package.module:factory`` (a callable returning an
  ``nn.Module``; the current directory is importable, as with ``python -m``).
  Without one, the embedded digits CNN is used.
- Weights are a state dict saved with ``torch.save``, read with
  ``weights_only=True`` (no pickle of arbitrary objects).
- Data are an image folder in torchvision's ``ImageFolder`` layout
  (``root/<class>/<image>``), or a tensor file (``torch.save`` of an (N, C, H, W)
  tensor, an ``(images, labels)`` pair, or a dict with an ``"images"`` key),
  read with ``weights_only=True``. Without data, the embedded digits test split.
- A groups file is JSON: a list of group dicts (the keys of
  :meth:`NeuronGroup.to_dict`; only ``layer`` and ``indices`` are required),
  a GroupSet file (:meth:`GroupSet.to_json`), or a circuit JSON (its nodes).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision import transforms
from torchvision.datasets import ImageFolder

from .. import ParameterError
from .._validation.checks import Count, Flag, Number, Satisfies
from .._validation.settings import Settings, documented, setting
from ..circuits import Circuit, read_groups
from ..data import Data, batch_inputs
from ..datasets import digits_cnn, load_digits
from ..groups import NeuronGroup
from .images import ToChannels, read_image
from .options import OptionError, one_line

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageOptions",
    "OptionError",
    "Source",
    "load_circuit",
    "load_data",
    "load_groups",
    "load_image_files",
    "load_model",
    "one_line",
    "parse_device",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_LAYERS = ("relu2", "relu3")
"""Circuit layers of the embedded digits CNN when ``--layers`` is not given."""


def parse_device(spec: str | None) -> torch.device:
    """``--device``: a torch device string; CUDA must be available if asked for."""
    if spec is None:
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise OptionError("--device", f"{spec!r} is not a device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device", f"{spec!r} asked for, but CUDA is not available here")
    return device


def _torchvision_model(name: str) -> nn.Module:
    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = [n for n in available if n.startswith(name[:4])][:6] or available[:6]
        raise OptionError("--model", f"torchvision has no model {name!r}; e.g. {', '.join(close)}")
    return torchvision.models.get_model(name, weights=None)


def _factory_model(spec: str) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise OptionError(
            "--model",
            f"{spec!r} is not a model spec; expected 'torchvision:NAME' "
            f"(e.g. torchvision:resnet18) or 'package.module:factory'",
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise OptionError("--model", f"cannot import {module_name!r} ({error})") from None
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise OptionError("--model", f"{module_name!r} has no attribute {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise OptionError("--model", f"{spec!r} is not callable")
    model = factory()
    if not isinstance(model, nn.Module):
        raise OptionError(
            "--model", f"{spec!r} returned {type(model).__name__}, not a torch nn.Module"
        )
    return model


def load_model(spec: str | None, weights: str | None = None) -> nn.Module:
    """``--model`` and ``--weights``: the model, in eval mode (the digits CNN without a spec).

    Examples
    --------
    >>> type(load_model(None)).__name__
    'DigitsCNN'
    >>> load_model("nonsense")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.cli.options.OptionError: --model: 'nonsense' is not a model spec; expected ...
    """
    if spec is None:
        model: nn.Module = digits_cnn()
    elif spec.startswith("torchvision:"):
        model = _torchvision_model(spec.removeprefix("torchvision:"))
    else:
        model = _factory_model(spec)
    if weights is not None:
        _load_weights(model, weights)
    return model.eval()


def _load_weights(model: nn.Module, path: str) -> None:
    if not Path(path).is_file():
        raise OptionError("--weights", f"{path} is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for foreign or corrupt files
        raise OptionError(
            "--weights", f"{path} cannot be read as a state dict with weights_only=True ({error})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OptionError(
            "--weights", f"{path} holds a {type(state).__name__}, not a state dict of tensors"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise OptionError(
            "--weights", f"{path} does not match {type(model).__name__}: {error}"
        ) from None


@dataclass(frozen=True)
class ImageOptions:
    """How image files become tensors: ``--image-size``, ``--mean``/``--std``, ``--grayscale``."""

    size: int = 224
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    grayscale: bool = False

    def transform(self) -> transforms.Compose:
        """Resize the short side, centre-crop a square, to a tensor of the channels asked
        for (any bit depth at its scale, :mod:`captum_groups.cli.images`), normalise."""
        steps: list = [transforms.Resize(self.size), transforms.CenterCrop(self.size)]
        steps.append(ToChannels(self.grayscale))
        if self.mean is not None and self.std is not None:
            steps.append(transforms.Normalize(self.mean, self.std))
        return transforms.Compose(steps)


def _optional_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and bool(value))


def _numbers(positive: bool) -> Satisfies:
    number = Number(0, open=True) if positive else Number()
    return Satisfies(
        lambda v: isinstance(v, tuple) and bool(v) and all(number.accepts(x) for x in v),
        f"a non-empty tuple of {'positive ' if positive else ''}finite numbers",
    )


TEXT = Satisfies(_optional_text, "a non-empty string or None")


@documented
@dataclasses.dataclass(frozen=True)
class Source(Settings):
    """Where the command's model and data come from, and how image files are read.

    A worker process rebuilds the same model and data from it
    (:meth:`load_model`, :meth:`load_data`), so a driver ships this small
    object, never the model.

    Examples
    --------
    >>> source = Source()
    >>> type(source.load_model()).__name__, tuple(source.load_data().shape)
    ('DigitsCNN', (450, 1, 8, 8))
    """

    model: str | None = setting(
        None,
        TEXT,
        "'torchvision:NAME' (e.g. torchvision:resnet18, built with weights=None) or "
        "'package.module:factory', a callable returning an nn.Module (the current folder is "
        "importable); None: the embedded digits CNN.",
        type_name="str or None",
        cli={"type": str, "metavar": "SPEC"},
    )
    weights: str | None = setting(
        None,
        TEXT,
        "A state dict saved with torch.save, loaded with weights_only=True.",
        type_name="str or None",
        cli={"type": str, "metavar": "FILE"},
    )
    data: str | None = setting(
        None,
        TEXT,
        "An image folder in ImageFolder layout (root/<class>/<image>) or a tensor file "
        "(torch.save of (N, C, H, W) images, an (images, labels) pair or a dict with "
        "'images'); None: the digits test split.",
        type_name="str or None",
        cli={"type": str, "metavar": "PATH"},
    )
    image_size: int = setting(
        224,
        Count(1),
        "Images are resized and centre-cropped to this side.",
        type_name="int",
        cli={"metavar": "PX"},
    )
    mean: tuple[float, ...] = setting(
        IMAGENET_MEAN,
        _numbers(positive=False),
        "Per-channel mean for normalising images (ImageNet's by default; with grayscale, "
        "their average).",
        type_name="tuple of float",
        cli={"type": float, "nargs": "+"},
    )
    std: tuple[float, ...] = setting(
        IMAGENET_STD,
        _numbers(positive=True),
        "Per-channel standard deviation for normalising images.",
        type_name="tuple of float",
        cli={"type": float, "nargs": "+"},
    )
    normalize: bool = setting(
        True,
        Flag(),
        "Normalise image values with mean and std (else leave them in [0, 1]).",
        type_name="bool",
    )
    grayscale: bool = setting(
        False,
        Flag(),
        "Read images with one channel.",
        type_name="bool",
    )
    device: str | None = setting(
        None,
        TEXT,
        "Torch device, e.g. cpu or cuda; None: cpu.",
        type_name="str or None",
        cli={"type": str},
    )

    def _check_together(self) -> None:
        channels = 1 if self.grayscale else 3
        for name, imagenet in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
            if getattr(self, name) == imagenet:
                continue  # ImageNet's statistics fit any channel count (averaged for one)
            if self.normalize and len(getattr(self, name)) not in (1, channels):
                raise ParameterError(
                    name, f"{name} needs 1 or {channels} values, got {len(getattr(self, name))}"
                )

    def image_options(self) -> ImageOptions:
        """How image files become tensors."""
        if not self.normalize:
            return ImageOptions(self.image_size, None, None, self.grayscale)
        mean, std = self.mean, self.std
        if self.grayscale and mean == IMAGENET_MEAN:
            mean, std = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        return ImageOptions(self.image_size, tuple(mean), tuple(std), self.grayscale)

    def torch_device(self) -> torch.device:
        """The device (:func:`parse_device`)."""
        return parse_device(self.device)

    def load_model(self) -> nn.Module:
        """The model, in eval mode, on the CPU (:func:`load_model`)."""
        return load_model(self.model, self.weights)

    def load_data(self) -> Data:
        """The data (:func:`load_data`)."""
        return load_data(self.data, self.image_options())


def load_data(path: str | None, options: ImageOptions) -> Data:
    """``--data``: an ImageFolder dataset or a tensor of images or of token ids (the digits
    test split without a path)."""
    if path is None:
        return load_digits("test")[0]
    location = Path(path)
    if location.is_dir():
        try:
            return ImageFolder(str(location), transform=options.transform(), loader=read_image)
        except (FileNotFoundError, PermissionError, OSError) as error:
            raise OptionError(
                "--data",
                f"{path} holds no readable images in the ImageFolder layout "
                f"(root/<class>/<image>): {error}",
            ) from None
    if location.is_file():
        try:
            loaded = torch.load(location, map_location="cpu", weights_only=True)
            images = batch_inputs(loaded, "--data")
        except Exception as error:  # torch.load raises many types for foreign or corrupt files
            raise OptionError(
                "--data",
                f"{path} is neither an image folder nor a tensor file readable with "
                f"weights_only=True ({error})",
            ) from None
        tokens = images.ndim == 2 and not images.is_floating_point() and images.dtype != torch.bool
        if not tokens and (images.ndim != 4 or not images.is_floating_point()):
            raise OptionError(
                "--data",
                f"{path} must hold float images shaped (N, C, H, W) or token ids (N, T), got "
                f"{images.dtype} {tuple(images.shape)}",
            )
        if len(images) == 0:
            raise OptionError("--data", f"{path} holds no images")
        return images
    raise OptionError("--data", f"{path} is not a folder or a file")


def load_image_files(paths: Sequence[str], options: ImageOptions) -> Tensor:
    """``--images``: image files, transformed as a folder's images are."""
    transform = options.transform()
    images = []
    for path in paths:
        try:
            images.append(transform(read_image(path)))
        except (OSError, ParameterError) as error:
            raise OptionError("--images", f"cannot read {path} ({error})") from None
    return torch.stack(images)


def load_circuit(path: str) -> Circuit:
    """A circuit JSON written by ``Circuit.to_json`` (read as JSON, never unpickled)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise OptionError("circuit", f"cannot read {path} as JSON text ({error})") from None
    try:
        return Circuit.from_json(text)
    except (ValueError, KeyError, TypeError) as error:
        raise OptionError(
            "circuit", f"{path} is not a captum-groups circuit JSON ({error})"
        ) from None


def load_groups(path: str, names: Sequence[str] | None = None) -> list[NeuronGroup]:
    """``--groups`` (and ``--nodes``): :func:`~captum_groups.circuits.read_groups`, its
    refusals told by option."""
    try:
        return read_groups(path, names)
    except ParameterError as error:
        raise OptionError(f"--{error.parameter}", str(error)) from None
