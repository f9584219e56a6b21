"""Tests of many processes and machines (captum_groups.distributed)."""
