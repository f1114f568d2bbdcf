"""Tests of `edgerun.bench`."""
