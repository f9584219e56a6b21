"""Tests of feature visualization and exemplars (captum_groups.viz)."""
