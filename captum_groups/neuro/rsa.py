"""Representational similarity analysis through rsatoolbox (the optional extra ``[neuro]``).

Kriegeskorte, Mur & Bandettini (Frontiers in Systems Neuroscience 2008): a
representational dissimilarity matrix (RDM) holds the dissimilarity of the
patterns each pair of stimuli evokes (1 - Pearson r by default); a model's
RDM and a brain's are compared by rank correlation (Spearman, Kendall's
tau-a) or another of rsatoolbox's comparisons. Confidence intervals come
from bootstrapping stimuli: each draw resamples the stimuli with
replacement, subsamples both RDMs with rsatoolbox and compares them again
(pairs of a stimulus with itself are left out, as rsatoolbox does).

Stimuli are matched by identity: an rsatoolbox ``Dataset`` with a
``stimulus`` descriptor gives the RDM rsatoolbox's
``calc_rdm(descriptor="stimulus")`` gives (stimuli in the descriptor's sorted
order, repetitions averaged), whatever the order the stimuli were presented
in; two RDMs that both name their stimuli are compared only on the same
stimuli, aligned by name. Plain arrays are patterns in row order.

rsatoolbox (Schuett et al.) does the work; it is imported when first needed,
with a message naming the extra when it is missing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .._validation.checks import SEED, Choice, Count, Number, validate
from .._validation.errors import ParameterError
from ._recordings import read_recordings

__all__ = ["COMPARISONS", "DISSIMILARITIES", "RSAResult", "compare_rdms", "rdm"]

COMPARISONS = ("spearman", "tau-a", "rho-a", "corr", "cosine", "corr_cov", "cosine_cov")
"""The RDM comparisons of rsatoolbox ``rdm.compare`` this module offers."""

DISSIMILARITIES = ("correlation", "euclidean", "mahalanobis", "crossnobis", "poisson", "poisson_cv")
"""The dissimilarities of rsatoolbox ``calc_rdm`` this module offers."""


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
        repetitions), or an RDM already made, returned as it is. A Dataset
        with a ``stimulus`` descriptor gives rsatoolbox's
        ``calc_rdm(descriptor="stimulus")``: its stimuli in sorted order,
        named by the RDM's ``stimulus`` pattern descriptor.
    dissimilarity : str
        rsatoolbox's dissimilarity (``calc_rdm``'s method): ``"correlation"`` (1 - Pearson r),
        ``"euclidean"``, ...

    Examples
    --------
    >>> found = rdm(np.random.default_rng(0).normal(size=(6, 4)))
    >>> found.n_cond, found.dissimilarities.shape
    (6, (1, 15))
    """
    validate({"dissimilarity": Choice(DISSIMILARITIES)}, {"dissimilarity": dissimilarity})
    rsatoolbox = _rsatoolbox()
    if isinstance(values, rsatoolbox.rdm.RDMs):
        if "index" not in values.pattern_descriptors:
            values = values.copy()
            values.pattern_descriptors["index"] = list(range(values.n_cond))
        return values
    found = read_recordings(values, parameter)
    if dissimilarity == "correlation" and found.mean.shape[1] < 2:
        raise ParameterError(
            parameter,
            f"{parameter} has one unit per stimulus (a one-neuron group?): the correlation "
            "dissimilarity of single numbers is undefined; use dissimilarity='euclidean'",
        )
    if found.stimuli is None:
        dataset = rsatoolbox.data.Dataset(found.mean)
        made = rsatoolbox.rdm.calc_rdm(dataset, method=dissimilarity)
    else:
        named = {"stimulus": found.stimuli}
        dataset = rsatoolbox.data.Dataset(found.mean, obs_descriptors=named)
        made = rsatoolbox.rdm.calc_rdm(dataset, method=dissimilarity, descriptor="stimulus")
    if np.isnan(made.dissimilarities).any():
        raise ParameterError(
            parameter,
            f"{parameter}: some dissimilarities are undefined (NaN): with the correlation "
            "dissimilarity, a stimulus whose pattern is the same on every unit (e.g. a "
            "group silent on it) has no correlation; use dissimilarity='euclidean'",
        )
    made.pattern_descriptors["index"] = list(range(made.n_cond))
    return made


def _aligned(first, second):  # type: ignore[no-untyped-def]
    """``second`` with its stimuli in ``first``'s order, when both RDMs name them
    (rsatoolbox's ``stimulus`` pattern descriptor); otherwise as it is, by position."""
    if first.n_cond != second.n_cond:
        raise ParameterError(
            "brain",
            f"model and brain must cover the same stimuli: {first.n_cond} and {second.n_cond}",
        )
    names = [list(rdms.pattern_descriptors.get("stimulus", [])) for rdms in (first, second)]
    if not (names[0] and names[1]):
        return second
    position = {name: i for i, name in enumerate(names[1])}
    if len(position) != len(names[1]) or set(position) != set(names[0]):
        raise ParameterError(
            "brain",
            "model and brain name their stimuli, and not the same ones: "
            f"{sorted(map(str, set(names[0]) ^ set(position)))[:5]} are on one side only",
        )
    aligned = second.copy()
    aligned.reorder(np.array([position[name] for name in names[0]]))
    aligned.pattern_descriptors["index"] = list(range(aligned.n_cond))
    return aligned


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

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> brain = rng.normal(size=(30, 10))
    >>> found = compare_rdms(brain @ rng.normal(size=(10, 10)), brain, n_draws=50)
    >>> found.comparison, found.samples.shape, found.ci[0] <= found.value <= found.ci[1]
    ('spearman', (50,), True)
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
        Where both name their stimuli (rsatoolbox Datasets with a
        ``stimulus`` descriptor, or RDMs with a ``stimulus`` pattern
        descriptor) they are aligned by name; otherwise by position, a
        Dataset's stimuli in rsatoolbox's sorted order.
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
            "dissimilarity": Choice(DISSIMILARITIES),
            "n_draws": Count(0),
            "confidence": Number(0, 1, open=True),
            "random_state": SEED,
        },
        locals(),
    )
    rsatoolbox = _rsatoolbox()
    first = rdm(model, dissimilarity, "model")
    second = _aligned(first, rdm(brain, dissimilarity, "brain"))
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
