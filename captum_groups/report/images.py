"""Pictures as data URIs, so the report is one self-contained file (no network, no CDN)."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imsave

__all__ = ["array_uri", "figure_uri"]


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(figure: Figure, dpi: int = 110) -> str:
    """A matplotlib figure as a PNG data URI.

    Examples
    --------
    >>> figure_uri(Figure(figsize=(1, 1))).startswith("data:image/png;base64,")
    True
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return _png_uri(buffer.getvalue())


def array_uri(image: np.ndarray) -> str:
    """An image array (H, W), (H, W, 1) or (H, W, 3) in [0, 1] as a PNG data URI.

    One-channel images are drawn dark on light (``gray_r``), as the package's
    montages draw them.

    Examples
    --------
    >>> array_uri(np.zeros((4, 4, 1))).startswith("data:image/png;base64,")
    True
    """
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buffer = io.BytesIO()
    if image.ndim == 2:
        imsave(buffer, image, cmap="gray_r", vmin=0.0, vmax=1.0, format="png")
    else:
        imsave(buffer, image, format="png")
    return _png_uri(buffer.getvalue())
