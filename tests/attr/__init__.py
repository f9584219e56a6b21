"""Tests of attribution classes (captum_groups.attr)."""
