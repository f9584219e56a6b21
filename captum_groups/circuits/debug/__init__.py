"""Debugging one image through a circuit: which groups it expresses, where, and what they carry.

The package splits the job: ``score`` (the expression score and its typical
activations), ``flow`` (what each group carries), ``results`` (what a debug
returns), ``plot`` (its pictures) and ``image`` (:func:`debug_image`,
:func:`compare_classes`).

NeurFlow's first application (Cao et al., ICLR 2025): cut the image into the
same multi-scale crops the circuit was built from, score every group of the
circuit on every crop against the group's *typical activations* (each member
neuron's mean activation over the group's top exemplars), call the groups
above a threshold *active*, and follow the circuit from the target down
through them. Masking the named groups confirms the diagnosis.

The score (:func:`expression_score`) is the authors' log barrier::

    score = exp( mean_i log( max(a_i, 0) / (|t_i| + eps) + eps ) )

over the group's neurons ``i``, with activation ``a_i`` on the crop and
typical activation ``t_i``. It is the geometric mean of the neurons'
activations relative to their typical values, so:

- **1 means "as strongly as a typical exemplar"**, on geometric average; it
  is not capped (a crop can exceed the exemplars). A threshold of 0.6 (the
  default; the paper uses 0.6-0.8) reads "at least 60% of typical".
- **It is an AND over the group's neurons.** A silent neuron contributes
  ``log(eps)``, which caps the score near ``eps ** (1 / n)`` times the rest
  for a group of ``n`` neurons: about 0.001 for 2 neurons, 0.06 for 5, 0.25
  for 10, 0.5 for 20 and 0.7 for 40 (eps = 1e-6). So for small groups one
  silent neuron vetoes the group whatever the threshold, while groups of 40
  or more neurons can pass 0.6 with a silent member: thresholds are only
  comparable between groups of similar size, and ``eps`` matters there.
- **Polysemantic groups read low.** When a group's neurons answer different
  concepts, a crop showing one concept leaves the other neurons silent and
  the score collapses, although the group's value is half its typical one.
  :class:`GroupDebug` therefore also reports ``value_ratio`` (the group's
  value relative to its typical value, an arithmetic mean) and ``coverage``
  (the fraction of its neurons at the threshold or above): a high
  ``value_ratio`` with partial ``coverage`` and a low score is a partly
  expressed group.
- **Activations must be non-negative** (after a ReLU): negative values are
  clamped to zero, so on signed layers the score only sees the positive part.
  A member whose typical activation is zero would dominate the score (a
  warning says so).
- **A concept, not a class.** On the digits CNN (``benchmarks/debug_digits.py``)
  the groups of the ten class circuits are active (whole image, 0.6) on 73% of
  their own class's test images and on 28% of the others'; the best crop
  raises both (93%, 54%). ``eps`` from 1e-8 to 1e-3 changes at most 0.34% of
  those decisions there, since a member is silent in only 0.5% of cases.

The attribution part says how much each group carries: the conductance of
the target through the group (``LayerGroupConductance``, all paths), and the
target's change split along the circuit's own edges, top-down, with
:class:`~captum_groups.attr.LayerGroupInteraction` giving each edge's share of the
upper group's change on this image (``flow``). Masking the top group of the
circuit's top layer so ranked sends 9 of the digits CNN's 10 errors back to
the true class, against 21% for random groups of the same size.
"""

from .image import compare_classes, debug_image
from .results import ClassComparison, GroupDebug, ImageDebug
from .score import expression_score, typical_activations

__all__ = [
    "ClassComparison",
    "GroupDebug",
    "ImageDebug",
    "compare_classes",
    "debug_image",
    "expression_score",
    "typical_activations",
]
