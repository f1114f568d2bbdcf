"""Tests of `edgerun.runtime`."""
