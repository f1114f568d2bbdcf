"""Tests of `edgerun.export`."""
