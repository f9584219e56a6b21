"""Tests of circuits: the graph, building, fidelity, debugging (captum_groups.circuits)."""
