"""Tests of `edgerun.compare`."""
