"""Tests of `edgerun.data`."""
