"""Tests of `edgerun.distill`."""
