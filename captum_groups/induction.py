"""A tiny GPT that copies by induction, trained by this module, shipped with the package.

The task has a known mechanism (Olsson et al. 2022, "In-context learning and induction
heads"): each sequence of random tokens holds a segment that is repeated, ``x A B C D A
B C D y``, at a random place and with a random length, so that no fixed position or
offset gives the answer; inside the repeat the next token is the one that followed the
current token in its first occurrence. A two-layer model learns it with heads in series:
*previous-token heads* in layer 0 write each token's predecessor into its position, and
*induction heads* in layer 1 attend from the current token to the position after its
earlier occurrence and copy that token to the output. ``python -m captum_groups.induction``
trains the shipped weights (about a minute on two CPU cores) and prints the accuracy where
copying is possible and elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ._validation.checks import SEED, Count

__all__ = [
    "TINY_GPT_WEIGHTS",
    "TinyGPT",
    "induction_data",
    "induction_prompts",
    "tiny_gpt",
    "train_tiny_gpt",
]

TINY_GPT_WEIGHTS = Path(__file__).parent / "_data" / "tiny_gpt.pt"
"""The shipped weights of :func:`tiny_gpt`."""

VOCAB, LENGTH, WIDTH, HEADS, LAYERS = 24, 20, 32, 4, 2
SEGMENT = (4, 8)
"""Shortest and longest repeated segment."""


class TinyGPT(nn.Module):
    """A causal transformer: token embedding, learned positions, two blocks of torch's
    ``nn.TransformerEncoderLayer`` (pre-norm, causal mask), a final norm and an unembedding.

    Examples
    --------
    >>> model = TinyGPT()
    >>> model(torch.zeros(3, 20, dtype=torch.long)).shape  # logits per position
    torch.Size([3, 20, 24])
    """

    def __init__(self, vocab: int = VOCAB, length: int = LENGTH) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, WIDTH)
        self.positions = nn.Parameter(torch.randn(length, WIDTH) * 0.1)
        block = nn.TransformerEncoderLayer(
            WIDTH, HEADS, 4 * WIDTH, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.unembed = nn.Linear(WIDTH, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        x = self.embed(tokens) + self.positions[:length]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        return self.unembed(self.norm(self.blocks(x, mask=causal, is_causal=True)))


def induction_data(n: int, random_state: int | None = 0) -> tuple[Tensor, Tensor]:
    """``n`` sequences of random tokens, each with a segment repeated right after itself;
    and where the next token can be copied: (tokens (n, LENGTH), copyable (n, LENGTH)).

    ``copyable[i, t]`` is True where the token after position t is predictable by
    induction: inside the repeat, after its first token.

    Examples
    --------
    >>> tokens, copyable = induction_data(3)
    >>> tokens.shape, copyable.shape
    (torch.Size([3, 20]), torch.Size([3, 20]))
    >>> t = copyable[0].nonzero()[:, 0]  # positions whose next token repeats an earlier one
    >>> bool((tokens[0, t + 1] == tokens[0, t + 1 - (len(t) + 1)]).all())
    True
    """
    Count(1).check(n, "n")
    SEED.check(random_state, "random_state")
    generator = torch.Generator().manual_seed(random_state or 0)
    tokens = torch.randint(VOCAB, (n, LENGTH), generator=generator)
    copyable = torch.zeros(n, LENGTH, dtype=torch.bool)
    sizes = torch.randint(SEGMENT[0], SEGMENT[1] + 1, (n,), generator=generator)
    for row, size in enumerate(sizes.tolist()):
        start = int(torch.randint(LENGTH - 2 * size + 1, (1,), generator=generator))
        tokens[row, start + size : start + 2 * size] = tokens[row, start : start + size]
        # from the repeat's first token on, each next token is the copy of an earlier one
        copyable[row, start + size : start + 2 * size - 1] = True
    return tokens, copyable


def induction_prompts(n: int, random_state: int | None = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Clean prompts, corrupted ones, and where copying is possible: (clean, corrupted,
    copyable), each (n, LENGTH).

    A corrupted prompt has the first occurrence of its repeated segment replaced by other
    random tokens: nothing is left to copy from, everything else is the same (the
    corrupted input of the induction circuit's patching).

    Examples
    --------
    >>> clean, corrupted, copyable = induction_prompts(3)
    >>> changed = clean != corrupted
    >>> bool((changed.sum(1) > 0).all()), bool((changed & copyable).any())  # only the first copy
    (True, False)
    """
    clean, copyable = induction_data(n, random_state)
    other, _ = induction_data(n, None if random_state is None else random_state + 1)
    first = torch.zeros_like(copyable)
    for row in range(n):
        positions = copyable[row].nonzero()[:, 0]
        size = len(positions) + 1
        first[row, positions[0] - size : positions[0]] = True
    # a replaced token may equal the clean one by chance: draw it again from the next token
    replaced = torch.where(other == clean, (other + 1) % VOCAB, other)
    return clean, torch.where(first, replaced, clean), copyable


def train_tiny_gpt(steps: int = 4000, random_state: int = 0, batch_size: int = 64) -> TinyGPT:
    """Train a :class:`TinyGPT` on :func:`induction_data`, deterministically (AdamW, the
    loss on the copyable positions only).

    Examples
    --------
    >>> model = train_tiny_gpt(steps=2)
    >>> model.training
    False
    """
    torch.manual_seed(random_state)
    model = TinyGPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for step in range(steps):
        tokens, copyable = induction_data(batch_size, random_state * 1_000_003 + step + 1)
        logits = model(tokens)[:, :-1][copyable[:, :-1]]
        loss = nn.functional.cross_entropy(logits, tokens[:, 1:][copyable[:, :-1]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def tiny_gpt(pretrained: bool = True) -> TinyGPT:
    """The tiny induction GPT in eval mode, with the shipped weights by default.

    Examples
    --------
    >>> model, (tokens, copyable) = tiny_gpt(), induction_data(200, random_state=123)
    >>> with torch.no_grad():
    ...     predicted = model(tokens).argmax(-1)[:, :-1]
    >>> right = predicted == tokens[:, 1:]
    >>> bool(right[copyable[:, :-1]].float().mean() > 0.9)  # it copies
    True
    """
    model = TinyGPT()
    if pretrained:
        model.load_state_dict(torch.load(TINY_GPT_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def _main() -> None:
    model = train_tiny_gpt()
    tokens, copyable = induction_data(2000, random_state=12345)
    with torch.no_grad():
        right = model(tokens).argmax(-1)[:, :-1] == tokens[:, 1:]
    copied = right[copyable[:, :-1]].float().mean().item()
    elsewhere = right[~copyable[:, :-1]].float().mean().item()
    TINY_GPT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), TINY_GPT_WEIGHTS)
    print(
        f"next-token accuracy: copyable {copied:.3f}, elsewhere {elsewhere:.3f} (chance "
        f"{1 / VOCAB:.3f}); weights written to {TINY_GPT_WEIGHTS}"
    )


if __name__ == "__main__":
    _main()
