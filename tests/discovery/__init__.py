"""Tests of finding groups (captum_groups.discovery)."""
