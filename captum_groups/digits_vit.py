"""A tiny vision transformer for the digits, trained by this module, shipped with the package.

The 8 x 8 digit images are cut into 16 patches of 2 x 2 pixels; a class token and the
patches go through two pre-norm blocks of torch's ``nn.TransformerEncoderLayer`` (four
heads each), and the class token's final state is classified. ``hooked(digits_vit())``
reads it through TransformerLens's hook points; token t >= 1 reads the image box
``patch_box(t, 8, 2)``. ``python -m captum_groups.digits_vit`` trains the shipped weights
(under a minute on two CPU cores) and prints the test accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .datasets import _random_shift, load_digits

__all__ = ["DIGITS_VIT_WEIGHTS", "DigitsViT", "digits_vit", "train_digits_vit"]

DIGITS_VIT_WEIGHTS = Path(__file__).parent / "_data" / "digits_vit.pt"
"""The shipped weights of :func:`digits_vit`."""

PATCH, WIDTH, HEADS, LAYERS = 2, 32, 4, 2


class DigitsViT(nn.Module):
    """Patch embedding (a 2 x 2 convolution), a class token, learned positions, two encoder
    blocks, a final norm, and a linear head on the class token.

    Examples
    --------
    >>> model = DigitsViT()
    >>> model(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.patches = nn.Conv2d(1, WIDTH, PATCH, stride=PATCH)
        self.class_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.positions = nn.Parameter(torch.randn(1, 1 + (8 // PATCH) ** 2, WIDTH) * 0.1)
        block = nn.TransformerEncoderLayer(
            WIDTH, HEADS, 2 * WIDTH, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, images: Tensor) -> Tensor:
        # patches row by row, as torchvision's and HuggingFace's ViTs order them
        tokens = self.patches(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(len(images), -1, -1), tokens], 1)
        return self.head(self.norm(self.blocks(tokens + self.positions))[:, 0])


def train_digits_vit(epochs: int = 60, random_state: int = 0, batch_size: int = 64) -> DigitsViT:
    """Train a :class:`DigitsViT` on the digits training split, deterministically (AdamW,
    cosine schedule, shifts of up to one pixel).

    Examples
    --------
    >>> model = train_digits_vit(epochs=1)
    >>> model.training
    False
    """
    images, labels = load_digits("train")
    torch.manual_seed(random_state)
    generator = torch.Generator().manual_seed(random_state)
    model = DigitsViT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    steps = epochs * -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(
                model(_random_shift(images[batch], generator)), labels[batch]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def digits_vit(pretrained: bool = True) -> DigitsViT:
    """The tiny digits ViT in eval mode, with the shipped weights by default.

    Examples
    --------
    >>> x, y = load_digits("test")
    >>> with torch.no_grad():
    ...     accuracy = (digits_vit()(x).argmax(1) == y).float().mean()
    >>> bool(accuracy > 0.9)
    True
    """
    model = DigitsViT()
    if pretrained:
        model.load_state_dict(torch.load(DIGITS_VIT_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def _main() -> None:
    model = train_digits_vit()
    x, y = load_digits("test")
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    DIGITS_VIT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), DIGITS_VIT_WEIGHTS)
    print(f"test accuracy {accuracy:.4f}; weights written to {DIGITS_VIT_WEIGHTS}")


if __name__ == "__main__":
    _main()
