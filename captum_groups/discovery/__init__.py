"""Finding neuron groups: exemplars, NeurFlow core neurons, and grouping estimators."""

from .clustering import CoactivationClustering, ConceptClustering
from .crops import NEURFLOW_SCALES, crop_and_resize, crop_boxes
from .exemplars import ExemplarMiner, Exemplars, TopExemplars, mine_exemplars
from .nmf import NMFGroups

__all__ = [
    "NEURFLOW_SCALES",
    "CoactivationClustering",
    "ConceptClustering",
    "NMFGroups",
    "ExemplarMiner",
    "Exemplars",
    "TopExemplars",
    "crop_and_resize",
    "crop_boxes",
    "mine_exemplars",
]
