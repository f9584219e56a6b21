"""Groups aligned with brains: localizers, encoding models, RSA, CKA and a group's physiology.

Kar, Kornblith & Fedorenko (Nature Machine Intelligence 2022, arXiv
2206.03951) and Zou & Li (arXiv 2203.13262) ask that model components be
aligned with brain constructs (areas, selectivity, recurrence), with feature
visualization and attribution as the tools both fields share. This
subpackage gives a neuron group (or a layer, or a GroupSet) the
neuroscientist's tools, on recordings held as arrays (stimuli x units, or
repetitions x stimuli x units) or rsatoolbox datasets:

- :func:`localize`: the functional localizer (Welch t-test per unit, top
  fraction or FDR), a weighted NeuronGroup to lesion with ``ablate``;
- :class:`NeuralPredictivity`, :func:`neural_predictivity`,
  :func:`reverse_predictivity`: Brain-Score's PLS encoding models with its
  split-half noise ceiling, equal to Brain-Score's own numbers (stimuli
  matched by identity, splits stratified by object where asked);
- :func:`compare_rdms`, :func:`rdm`: RSA through rsatoolbox (extra
  ``[neuro]``), with bootstrap intervals over stimuli;
- :func:`cka`, :func:`similarity_matrix`: linear CKA (Kornblith et al. 2019)
  between layers, groups, models and recordings, centred before the Gram
  matrices so raw firing rates far from zero score right;
- :func:`alignment_map`: for each area, the layer and groups that predict it best;
- :func:`gratings`, :func:`tuning_curve`, :func:`receptive_field`: a group's physiology.

A group of a module that runs several times per forward pass (a recurrent
block unrolled in time, as in CORnet) is aligned at one time step with
``NeuronGroup(layer, indices, call=t)``.
"""

from .alignment import AlignmentMap, alignment_map
from .cka import SimilarityMatrix, cka, similarity_matrix
from .encoding import (
    CEILING_CONVENTIONS,
    NeuralPredictivity,
    neural_predictivity,
    pearson_per_unit,
    reverse_predictivity,
    split_half_ceiling,
)
from .features import features
from .localizer import localize, welch_t
from .physiology import Gratings, TuningCurve, gratings, tuning_curve
from .receptive_field import ReceptiveField, receptive_field
from .rsa import RSAResult, compare_rdms, rdm

__all__ = [
    "CEILING_CONVENTIONS",
    "AlignmentMap",
    "Gratings",
    "NeuralPredictivity",
    "RSAResult",
    "ReceptiveField",
    "SimilarityMatrix",
    "TuningCurve",
    "alignment_map",
    "cka",
    "compare_rdms",
    "features",
    "gratings",
    "localize",
    "neural_predictivity",
    "pearson_per_unit",
    "rdm",
    "receptive_field",
    "reverse_predictivity",
    "similarity_matrix",
    "split_half_ceiling",
    "tuning_curve",
    "welch_t",
]
