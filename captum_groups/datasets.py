"""Small embedded data and models for tests, demos and tutorials.

Everything here works offline: the data are scikit-learn's bundled handwritten
digits (1797 grayscale 8x8 images, ten classes) and the model is a small CNN
whose trained weights ship inside the package. The weights are produced by
:func:`train_digits_cnn`; run ``python -m captum_groups.datasets`` to train
them again (deterministic on the CPU).

Examples
--------
>>> from captum_groups.datasets import load_digits, digits_cnn
>>> x_test, y_test = load_digits("test")
>>> model = digits_cnn()
>>> accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
>>> accuracy >= 0.97
True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from ._validation.deprecation import renamed_keywords

__all__ = ["DigitsCNN", "digits_cnn", "load_digits", "train_digits_cnn", "DIGITS_WEIGHTS"]

DIGITS_WEIGHTS = Path(__file__).parent / "_data" / "digits_cnn.pt"
"""Path of the shipped state dict of :class:`DigitsCNN`."""

_SPLIT_SEED = 0
_TEST_FRACTION = 0.25


def load_digits(split: Literal["train", "test", "all"] = "train") -> tuple[Tensor, Tensor]:
    """Load scikit-learn's handwritten digits as image tensors.

    The split is fixed (stratified, 25% held out, seed 0), so every test,
    tutorial and benchmark sees the same images.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Which part of the data to return.

    Returns
    -------
    images : Tensor
        Float32 tensor of shape (N, 1, 8, 8) with values in [0, 1].
    labels : Tensor
        Int64 tensor of shape (N,) with the digit class 0-9.

    Examples
    --------
    >>> x, y = load_digits("test")
    >>> tuple(x.shape), tuple(y.shape)
    ((450, 1, 8, 8), (450,))
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    bunch = _sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    if split == "all":
        return torch.from_numpy(images), torch.from_numpy(labels)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=labels
    )
    if split == "train":
        return torch.from_numpy(x_train), torch.from_numpy(y_train)
    return torch.from_numpy(x_test), torch.from_numpy(y_test)


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits with one module per step, each used once.

    Layers (dotted names): ``conv1`` (16 channels, 8x8), ``relu1``, ``conv2``
    (32 channels, 8x8), ``relu2``, ``pool`` (to 4x4), ``conv3`` (64 channels,
    4x4), ``relu3``, ``gap`` (global average pooling, so any input size of at
    least 2x2 works), ``fc1`` (32 units), ``relu4``, ``fc2`` (10 logits).

    Examples
    --------
    >>> model = DigitsCNN()
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(64, 32)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        x = self.relu3(self.conv3(self.pool(x)))
        x = self.gap(x).flatten(1)
        return self.fc2(self.relu4(self.fc1(x)))


def digits_cnn(pretrained: bool = True) -> DigitsCNN:
    """Return the digits CNN in eval mode, with the shipped weights by default.

    Parameters
    ----------
    pretrained : bool
        Load the trained weights shipped with the package (no download).

    Examples
    --------
    >>> model = digits_cnn()
    >>> model.training
    False
    """
    model = DigitsCNN()
    if pretrained:
        model.load_state_dict(torch.load(DIGITS_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def _random_shift(images: Tensor, generator: torch.Generator) -> Tensor:
    """Shift each image by up to one pixel in each direction (zero fill)."""
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    n, _, h, w = images.shape
    dy = torch.randint(0, 3, (n,), generator=generator)
    dx = torch.randint(0, 3, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, 1, h, w + 2)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, 1, h, w)
    return shifted.gather(3, cols)


@renamed_keywords(seed="random_state")
def train_digits_cnn(
    epochs: int = 100,
    random_state: int = 0,
    lr: float = 3e-3,
    batch_size: int = 64,
    regularizer: Callable[[DigitsCNN], Callable[[], Tensor]] | None = None,
    images: Tensor | None = None,
    labels: Tensor | None = None,
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` deterministically on the digits training split.

    Parameters
    ----------
    epochs : int
        Passes over the training data.
    random_state : int
        Seed for initialisation, shuffling and augmentation (formerly ``seed``).
    lr : float
        Adam learning rate (cosine-annealed to zero).
    batch_size : int
        Mini-batch size.
    regularizer : callable, optional
        Called once with the new model before training; it returns a
        callable whose value is added to the loss after every forward pass,
        e.g. ``lambda model: BEANRegularizer(model, "relu3", alpha=1.0)``.
        Its ``close()`` (if any) is called after training, also on error.
    images, labels : Tensor, optional
        Training data; the digits training split by default.

    Returns
    -------
    DigitsCNN
        The trained model, in eval mode.

    Examples
    --------
    >>> model = train_digits_cnn(epochs=1)
    >>> model.training
    False
    """
    if images is None or labels is None:
        images, labels = load_digits("train")
    torch.manual_seed(random_state)
    generator = torch.Generator().manual_seed(random_state)
    model = DigitsCNN()
    extra_loss = regularizer(model) if regularizer is not None else None
    try:
        _fit(model, images, labels, epochs, lr, batch_size, generator, extra_loss)
    finally:
        if hasattr(extra_loss, "close"):
            extra_loss.close()
    return model.eval()


def _fit(
    model: DigitsCNN,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    extra_loss: Callable[[], Tensor] | None,
) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            x = _random_shift(images[batch], generator)
            loss = nn.functional.cross_entropy(model(x), labels[batch])
            if extra_loss is not None:
                loss = loss + extra_loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()


def _main() -> None:
    model = train_digits_cnn()
    x_test, y_test = load_digits("test")
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    DIGITS_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), DIGITS_WEIGHTS)
    print(f"test accuracy {accuracy:.4f}; weights written to {DIGITS_WEIGHTS}")


if __name__ == "__main__":
    _main()
