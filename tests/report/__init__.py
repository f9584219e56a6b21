"""Tests of the report and the atlas (captum_groups.report)."""
