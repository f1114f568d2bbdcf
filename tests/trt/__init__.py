"""Tests of `edgerun.trt`."""
