"""Validation: the package's error, declared checks, settings objects, JSON schemas and
deprecations (one rule each, shared by the API and the command line)."""
