"""Corrupted inputs for circuits through the residual stream: the input whose run every
edge outside a circuit takes its values from (Wang et al. 2022; Conmy et al. 2023).

- ``"resample"``: each example is replaced by another example (resample ablation), drawn
  from ``pool`` (other examples than the clean ones: for a class, the images of other
  classes) or, without a pool, from the clean examples themselves, never itself.
- ``"shuffle"``: each token sequence with its tokens in a random order: the same tokens,
  none of the order (token ids only).

A corrupted input made by hand (one token replaced, a counterfactual prompt) is passed to
:func:`~captum_groups.circuits.build_stream_circuit` as ``corrupted=``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation.checks import SEED, ParameterError

__all__ = ["CORRUPTIONS", "corrupt"]

CORRUPTIONS = ("resample", "shuffle")
"""The corrupted inputs :func:`corrupt` makes."""


def corrupt(
    inputs: Tensor, how: str, random_state: int | None = None, pool: Tensor | None = None
) -> Tensor:
    """Corrupted counterparts of ``inputs``, one per example, seeded.

    Parameters
    ----------
    inputs : Tensor
        The clean inputs (N, ...).
    how : {"resample", "shuffle"}
        How they are corrupted (see the module's docstring).
    random_state : int, optional
        Seed of the draw.
    pool : Tensor, optional
        Examples to resample from (``"resample"``); by default the other clean ones.

    Examples
    --------
    >>> tokens = torch.arange(12).view(3, 4)
    >>> shuffled = corrupt(tokens, "shuffle", random_state=0)
    >>> bool((shuffled.sort(1).values == tokens).all()), bool((shuffled != tokens).any())
    (True, True)
    >>> resampled = corrupt(tokens, "resample", random_state=0)
    >>> sorted(resampled[:, 0].tolist()), bool((resampled[:, 0] != tokens[:, 0]).all())
    ([0, 4, 8], True)
    """
    SEED.check(random_state, "random_state")
    generator = torch.Generator().manual_seed(random_state or 0)
    if how == "shuffle":
        if inputs.is_floating_point() or inputs.ndim != 2:
            raise ParameterError(
                "corrupt",
                "corrupt='shuffle' reorders token ids (N, T); use 'resample' for "
                f"inputs {inputs.dtype} {tuple(inputs.shape)}",  # fmt: skip
            )
        order = torch.rand(inputs.shape, generator=generator).argsort(1).to(inputs.device)
        return inputs.gather(1, order)
    if how != "resample":
        raise ParameterError("corrupt", f"corrupt must be one of {CORRUPTIONS}, got {how!r}")
    if pool is not None:
        if len(pool) == 0 or pool.shape[1:] != inputs.shape[1:]:
            raise ParameterError(
                "pool",
                f"pool must hold examples shaped {tuple(inputs.shape[1:])}, got "
                f"{tuple(pool.shape)}",  # fmt: skip
            )
        drawn = torch.randint(len(pool), (len(inputs),), generator=generator)
        return pool[drawn.to(pool.device)].to(inputs.device)
    if len(inputs) < 2:
        raise ParameterError("inputs", "corrupt='resample' needs two examples or a pool")
    # a random derangement: a shift of a random order moves every example
    order = torch.randperm(len(inputs), generator=generator)
    shift = int(torch.randint(1, len(inputs), (1,), generator=generator))
    target = torch.empty_like(order)
    target[order] = order.roll(shift)
    return inputs[target.to(inputs.device)]
