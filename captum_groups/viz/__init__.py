"""Pictures of groups and circuits: feature visualization, exemplar montages, circuit plots.

A leaf of the package: nothing else imports it, except ``Circuit.plot`` lazily.
"""

from .circuit_plot import plot_circuit
from .exemplars import plot_group_exemplars
from .lucent import group_objective, lucent_layer_name, render_circuit, render_groups

__all__ = [
    "group_objective",
    "lucent_layer_name",
    "plot_circuit",
    "plot_group_exemplars",
    "render_circuit",
    "render_groups",
]
