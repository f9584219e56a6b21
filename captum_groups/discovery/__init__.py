"""Finding neuron groups: exemplars, NeurFlow core neurons, and grouping estimators."""

from .clustering import AssemblyClustering, CoactivationClustering, ConceptClustering
from .core import CoreNeurons, CoreScores, find_core_neurons
from .crops import NEURFLOW_SCALES, crop_and_resize, crop_boxes
from .exemplars import ExemplarMiner, Exemplars, TopExemplars
from .mining import exemplar_activations, mine_exemplars
from .nmf import NMFGroups

__all__ = [
    "NEURFLOW_SCALES",
    "AssemblyClustering",
    "CoactivationClustering",
    "ConceptClustering",
    "CoreNeurons",
    "CoreScores",
    "find_core_neurons",
    "NMFGroups",
    "ExemplarMiner",
    "Exemplars",
    "TopExemplars",
    "crop_and_resize",
    "crop_boxes",
    "exemplar_activations",
    "mine_exemplars",
]
