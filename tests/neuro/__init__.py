"""Tests of alignment with brains (captum_groups.neuro)."""
