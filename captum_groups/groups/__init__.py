"""What a neuron group is and how it reduces a layer output to one scalar.

A :class:`NeuronGroup` names a layer and some of its neurons (channels of a
conv layer, units of a linear layer, features of a sequence layer). Called on
that layer's output it returns one number per example, so it is a valid Captum
``neuron_selector``. A :class:`GroupSet` is an ordered collection of groups of
one layer.

The value of a group on an example is the weighted sum over its neurons of
each neuron's activation, where a neuron's activation is its slice of the
layer output reduced over the remaining (spatial or sequence) axes::

    group(output) = sum_k  weights[k] * reduce(output[:, indices[k]])

Groups of neurons that fire together are the unit of NeurFlow (Cao et al.,
ICLR 2025), of neuronal assemblies (BEAN, Gao et al. 2021) and of the NMF
"neuron groups" of Building Blocks of Interpretability (Olah et al. 2018).
"""

from .group_set import GROUPSET_FORMAT, GroupSet, GroupsLike, as_group_list
from .layers import Layer as Layer
from .layers import layer_name, neuron_means
from .layers import only_embedding as only_embedding
from .layers import resolve_layer as resolve_layer
from .neuron_group import NeuronGroup
from .neuron_group import common_call as common_call

__all__ = [
    "GROUPSET_FORMAT",
    "GroupSet",
    "GroupsLike",
    "NeuronGroup",
    "as_group_list",
    "layer_name",
    "neuron_means",
]
# Layer, resolve_layer and common_call are re-exported (the redundant aliases above) for the
# package's own modules: helpers, not part of the API.
