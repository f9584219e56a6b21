"""Image files of any bit depth and mode, read at the right scale.

torchvision's default loader converts every image to 8-bit RGB, which clips
a 16-bit image (its values are 0-65535) and drops an alpha channel as it
lies. :func:`read_image` keeps each file's scale instead:

- 8-bit grayscale and colour images (``L``, ``RGB``) as they are;
- 16-bit and 32-bit integer images (``I;16``, ``I``) as floats in [0, 1],
  divided by the largest value of their bit depth;
- floating-point images (``F``) as they are;
- images with transparency (``RGBA``, ``LA``, palette images with a
  transparent colour) composited onto white, as a viewer shows them;
- other modes (palette, bilevel, CMYK, YCbCr) converted to RGB.

:class:`ToChannels` then makes a tensor with the channels asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import functional

from .. import ParameterError

__all__ = ["ToChannels", "read_image"]

_INTEGER_MAX = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def _flattened(image: Image.Image) -> Image.Image:
    """An image with transparency composited onto white."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba)
    return flat.convert("L" if image.mode in ("LA", "La") else "RGB")


def read_image(path: str | Path) -> Image.Image:
    """The image file as an ``L`` or ``RGB`` image (8-bit), or an ``F`` image in [0, 1].

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "deep.png"
    >>> Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16)).save(path)
    >>> round(float(np.asarray(read_image(path)).max()), 3)  # half of 16 bits: 0.5
    0.5

    A file that is not an image is refused by ``data``, naming the file (an
    image folder is read lazily: the error comes from whichever pass reads
    it first).
    """
    try:
        return _read(path)
    except OSError as error:  # PIL's UnidentifiedImageError, a truncated file, ...
        raise ParameterError("data", f"cannot read the image {path}: {error}") from None


def _read(path: str | Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        mode = image.mode
        if mode in _INTEGER_MAX or mode == "I":
            values = np.asarray(image, dtype=np.float64)
            # "I" holds 16-bit files on older Pillow, 32-bit ones otherwise
            top = _INTEGER_MAX.get(mode) or (65535.0 if values.max() <= 65535 else 2.0**32 - 1)
            return Image.fromarray((values / top).astype(np.float32), mode="F")
        if mode == "F":
            return image.copy()
        if mode in ("RGBA", "LA", "La", "RGBa") or "transparency" in image.info:
            return _flattened(image)
        if mode in ("L", "RGB"):
            return image.copy()
        return image.convert("RGB")


class ToChannels:
    """A read image (:func:`read_image`) as a float tensor (C, H, W) with one channel
    (``grayscale``) or three, 8-bit values divided by 255."""

    def __init__(self, grayscale: bool) -> None:
        self.grayscale = grayscale

    def __call__(self, image: Image.Image) -> Tensor:
        if image.mode == "F":
            tensor = torch.from_numpy(np.array(image, dtype=np.float32))[None]
            return tensor if self.grayscale else tensor.expand(3, -1, -1).clone()
        wanted = "L" if self.grayscale else "RGB"
        return functional.to_tensor(image if image.mode == wanted else image.convert(wanted))

    def __repr__(self) -> str:
        return f"ToChannels(grayscale={self.grayscale})"
