"""Labels from the user's labelled data: the label over-represented among a group's exemplars."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy.stats import hypergeom
from torch import Tensor

from .base import GroupEvidence, GroupLabel, Labeler

__all__ = ["EnrichmentLabeler"]


class EnrichmentLabeler(Labeler):
    """The class or attribute most significantly over-represented among a group's exemplars.

    A group's exemplar images (each image counted once, however many of its
    crops are exemplars) are a sample of the data set. For every candidate
    label, a one-sided hypergeometric test asks whether the sample holds more
    images with that label than the label's base rate in the data would give
    by chance. The label with the smallest p-value wins if its
    Bonferroni-corrected p-value (times the number of candidates) is at most
    ``alpha``; otherwise the group gets no label (None). This is the
    enrichment test of gene-set analysis, applied to exemplars; NeurFlow's
    code counts the class labels of each concept's top images the same way,
    without the test.

    Parameters
    ----------
    labels : sequence of hashable (N,), or boolean array (N, A)
        One label per data-set image (e.g. the class), or an image x
        attribute indicator matrix (an image may have several attributes).
    names : sequence of str, or mapping, optional
        Names of the attribute columns (for a 2-d ``labels``), or a mapping
        from label values to names (for a 1-d ``labels``); ``str(value)`` by default.
    alpha : float
        Family-wise significance level.

    Notes
    -----
    The score is the precision: the fraction of the group's exemplar images
    that carry the label. The evidence holds the corrected p-value, the base
    rate, the enrichment (precision over base rate), the counts, and the
    uncorrected p-values of the five best candidates.

    Examples
    --------
    >>> import torch
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.labeling import GroupEvidence
    >>> labeler = EnrichmentLabeler(["cat"] * 10 + ["dog"] * 30)
    >>> exemplars = torch.tensor([0, 1, 2, 3, 4, 5, 12])  # six of the seven are cats
    >>> evidence = GroupEvidence("g", NeuronGroup("l", [0]), exemplars, *[None] * 5)
    >>> answer = labeler.label(evidence)
    >>> answer.label, round(answer.score, 3), answer.evidence["p_value"] < 0.001
    ('cat', 0.857, True)
    """

    def __init__(
        self,
        labels: Sequence[Hashable] | np.ndarray | Tensor,
        names: Sequence[str] | Mapping[Hashable, str] | None = None,
        alpha: float = 0.01,
    ) -> None:
        values = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
        if values.ndim == 1:
            candidates = sorted(set(values.tolist()), key=str)
            self.matrix = np.stack([values == c for c in candidates], 1)
            names = names or {}
            if not isinstance(names, Mapping):
                raise TypeError("names must be a mapping from label values to names for 1-d labels")
            self.names = [str(names.get(c, c)) for c in candidates]
        elif values.ndim == 2:
            if values.dtype != bool and not np.isin(values, (0, 1)).all():
                raise ValueError("2-d labels must be a boolean (images x attributes) matrix")
            self.matrix = values.astype(bool)
            if names is None:
                names = [str(i) for i in range(values.shape[1])]
            if isinstance(names, Mapping) or len(names) != values.shape[1]:
                raise ValueError(
                    f"names must give one name per attribute column ({values.shape[1]})"
                )
            self.names = [str(n) for n in names]
        else:
            raise ValueError(f"labels must be 1-d (one label per image) or 2-d, got {values.shape}")
        if len(self.matrix) == 0 or not self.names:
            raise ValueError("labels must label at least one image")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha

    def label(self, evidence: GroupEvidence) -> GroupLabel:
        """The most significantly over-represented label among the exemplar images."""
        # an image can hold several exemplar crops of the group; it is one draw of the urn
        images = np.unique(np.asarray(evidence.indices))
        total = len(self.matrix)
        if images.max() >= total:
            raise ValueError(
                f"labels has {total} entries, but the exemplars include data-set index "
                f"{images.max()}; give one label per example of the data"
            )
        with_label = self.matrix.sum(0)
        counts = self.matrix[images].sum(0)
        # P(at least `counts` labelled images among len(images) drawn without replacement
        # from `total`, `with_label` of them labelled): sf(k - 1) is P(X >= k)
        p_values = hypergeom.sf(counts - 1, total, with_label, len(images))
        # smallest p-value first; among equal ones (often several at 0) the larger count
        best = int(np.lexsort((-counts, p_values))[0])
        # Bonferroni over the labels tried: the best of many tests is otherwise too easy
        corrected = min(1.0, float(p_values[best]) * len(self.names))
        precision = counts[best] / len(images)
        base_rate = with_label[best] / total
        ranked = np.argsort(p_values, kind="stable")[:5]
        return GroupLabel(
            self.names[best] if corrected <= self.alpha and counts[best] > 0 else None,
            float(precision),
            {
                "p_value": corrected,
                "base_rate": float(base_rate),
                "enrichment": float(precision / base_rate) if base_rate > 0 else 0.0,
                "count": int(counts[best]),
                "images": len(images),
                "exemplars": len(evidence.indices),
                "raw_p_values": {self.names[i]: float(p_values[i]) for i in ranked},
            },
        )
