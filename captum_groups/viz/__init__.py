"""Pictures of groups and circuits (a leaf: nothing in the package imports it eagerly)."""

from .circuit_plot import plot_circuit

__all__ = ["plot_circuit"]
