"""Pictures of groups: feature visualization and exemplar montages.

A leaf of the package: nothing else imports it.
"""

from .exemplars import plot_group_exemplars
from .lucent import group_objective, lucent_layer_name, render_circuit, render_groups

__all__ = [
    "group_objective",
    "lucent_layer_name",
    "plot_group_exemplars",
    "render_circuit",
    "render_groups",
]
