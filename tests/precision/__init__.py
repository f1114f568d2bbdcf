"""Tests of `edgerun.precision`."""
