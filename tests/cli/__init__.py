"""Tests of the command line (captum_groups.cli)."""
