"""Representational similarity analysis through rsatoolbox (the optional extra ``[neuro]``).

Kriegeskorte, Mur & Bandettini (Frontiers in Systems Neuroscience 2008): a
representational dissimilarity matrix (RDM) holds the dissimilarity of the
patterns each pair of stimuli evokes (1 - Pearson r by default); a model's
RDM and a brain's are compared by rank correlation (Spearman, Kendall's
tau-a) or another of rsatoolbox's comparisons. Confidence intervals come
from bootstrapping stimuli: each draw resamples the stimuli with
replacement, subsamples both RDMs with rsatoolbox and compares them again
(pairs of a stimulus with itself are left out, as rsatoolbox does).

rsatoolbox (Schuett et al.) does the work; it is imported when first needed,
with a message naming the extra when it is missing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .._checks import SEED, Choice, Count, Number, validate
from .._errors import ParameterError
from ._recordings import read_recordings

__all__ = ["RSAResult", "compare_rdms", "rdm"]

COMPARISONS = ("spearman", "tau-a", "rho-a", "corr", "cosine", "corr_cov", "cosine_cov")
"""The RDM comparisons of rsatoolbox ``rdm.compare`` this module offers."""


def _rsatoolbox() -> ModuleType:
    try:
        importlib.import_module("rsatoolbox.rdm")
        return importlib.import_module("rsatoolbox")
    except ImportError as error:
        raise ImportError(
            "RSA uses rsatoolbox, which is not installed; install the extra: "
            "pip install 'captum-groups[neuro]'"
        ) from error


def rdm(values: object, dissimilarity: str = "correlation", parameter: str = "values"):  # type: ignore[no-untyped-def]
    """The RDM of a set of patterns, as an rsatoolbox ``RDMs``.

    Parameters
    ----------
    values : array, Tensor, rsatoolbox Dataset or RDMs
        (stimuli, units) patterns (features of a layer or group, or
        recordings; (repetitions, stimuli, units) are averaged over
        repetitions), or an RDM already made, returned as it is.
    dissimilarity : str
        rsatoolbox's dissimilarity (``calc_rdm``'s method): ``"correlation"`` (1 - Pearson r),
        ``"euclidean"``, ...

    Examples
    --------
    >>> found = rdm(np.random.default_rng(0).normal(size=(6, 4)))
    >>> found.n_cond, found.dissimilarities.shape
    (6, (1, 15))
    """
    rsatoolbox = _rsatoolbox()
    if isinstance(values, rsatoolbox.rdm.RDMs):
        if "index" not in values.pattern_descriptors:
            values = values.copy()
            values.pattern_descriptors["index"] = list(range(values.n_cond))
        return values
    patterns = read_recordings(values, parameter).mean
    stimuli = {"stimulus": np.arange(patterns.shape[0])}
    dataset = rsatoolbox.data.Dataset(patterns, obs_descriptors=stimuli)
    return rsatoolbox.rdm.calc_rdm(dataset, method=dissimilarity, descriptor="stimulus")


@dataclass(frozen=True)
class RSAResult:
    """The comparison of a model RDM with a brain RDM.

    Attributes
    ----------
    value : float
        The comparison on all stimuli.
    ci : tuple of float
        The bootstrap confidence interval (percentiles over draws).
    samples : ndarray
        The comparison on each bootstrap draw of stimuli.
    draws : ndarray
        (n_draws, stimuli): the stimuli of each draw.
    comparison : str
        How the RDMs were compared (rsatoolbox's ``compare`` method).
    """

    value: float
    ci: tuple[float, float]
    samples: np.ndarray
    draws: np.ndarray
    comparison: str


def compare_rdms(
    model: object,
    brain: object,
    comparison: str = "spearman",
    n_draws: int = 1000,
    confidence: float = 0.95,
    dissimilarity: str = "correlation",
    random_state: int | None = 0,
) -> RSAResult:
    """Compare a model's representation with a brain's, with a bootstrap interval over
    stimuli.

    Parameters
    ----------
    model, brain : array, Tensor, rsatoolbox Dataset or RDMs
        Patterns (stimuli, units) on the same stimuli (from
        :func:`~captum_groups.neuro.features` for a layer or group), or RDMs.
    comparison : str
        rsatoolbox's comparison (``compare``'s method): ``"spearman"``, ``"tau-a"``, ``"rho-a"``,
        ``"corr"``, ``"cosine"``, ``"corr_cov"`` or ``"cosine_cov"``.
    n_draws : int
        Bootstrap draws of stimuli (0: no interval).
    confidence : float
        Coverage of the interval.
    dissimilarity : str
        How patterns become RDMs (see :func:`rdm`).
    random_state : int, optional
        Seed of the draws.

    Returns
    -------
    RSAResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> brain = rng.normal(size=(30, 10))
    >>> found = compare_rdms(brain @ rng.normal(size=(10, 10)), brain, n_draws=50)
    >>> found.ci[0] <= found.value <= found.ci[1]
    True
    """
    validate(
        {
            "comparison": Choice(COMPARISONS),
            "n_draws": Count(0),
            "confidence": Number(0, 1, open=True),
            "random_state": SEED,
        },
        locals(),
    )
    rsatoolbox = _rsatoolbox()
    first, second = rdm(model, dissimilarity, "model"), rdm(brain, dissimilarity, "brain")
    if first.n_cond != second.n_cond:
        raise ParameterError(
            "brain",
            f"model and brain must cover the same stimuli: {first.n_cond} and {second.n_cond}",
        )
    value = float(rsatoolbox.rdm.compare(first, second, method=comparison)[0, 0])
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, first.n_cond, size=(n_draws, first.n_cond))
    samples = np.array(
        [
            rsatoolbox.rdm.compare(
                first.subsample_pattern("index", draw),
                second.subsample_pattern("index", draw),
                method=comparison,
            )[0, 0]
            for draw in draws
        ]
    )
    tail = 100 * (1 - confidence) / 2
    ci = (
        tuple(float(v) for v in np.nanpercentile(samples, [tail, 100 - tail]))
        if n_draws
        else (float("nan"), float("nan"))
    )
    return RSAResult(value, ci, samples, draws, comparison)  # type: ignore[arg-type]
