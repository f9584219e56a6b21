"""Tests of concept labels (captum_groups.labeling)."""
