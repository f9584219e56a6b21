"""Naming what each group sees: pluggable concept labelers (NeurFlow's second application).

- :func:`label_groups` gathers each group's evidence (its top exemplars, the
  crops, the member activations, the group's activation maps), asks a
  labeler, checks the answer, and puts the label into ``NeuronGroup.label``
  and, for a circuit, its label details (JSON, plots).
- :class:`Labeler`: the interface (``label(evidence) -> GroupLabel``).
- Shipped labelers, all offline: :class:`EnrichmentLabeler` (labels the
  user gives per image: the label over-represented among the exemplars, with
  a significance test against the base rate), :class:`MaskLabeler` (concept
  masks the user gives: NetDissect-style IoU with the group's activation
  map), :class:`EmbeddingLabeler` (a CLIP-style model the user has locally,
  given as image and text embedding functions).
"""

from .base import GroupEvidence, GroupLabel, Labeler, LabelerError
from .embedding import EmbeddingLabeler
from .enrichment import EnrichmentLabeler
from .label import Labeling, label_groups
from .masks import MaskLabeler

__all__ = [
    "EmbeddingLabeler",
    "EnrichmentLabeler",
    "GroupEvidence",
    "GroupLabel",
    "Labeler",
    "LabelerError",
    "Labeling",
    "MaskLabeler",
    "label_groups",
]
