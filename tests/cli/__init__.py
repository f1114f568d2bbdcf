"""Tests of `edgerun.cli`."""
