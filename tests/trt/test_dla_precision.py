"""DLA builds on TensorRT 10.x take FP16 by builder flag from the FP32 model; elsewhere load() converts first."""

from __future__ import annotations

import pytest

from edgerun.runtime.plan import Plan
from edgerun.trt.entry import ENTRY


def plan(version: str | None, precision: str = "fp16", **options: object) -> Plan:
    return Plan("tensorrt", version, "cuda:0", "jetson", ("cuda:0",), precision, 1, options=options)


@pytest.mark.parametrize(
    ("version", "precision", "options", "from_fp32"),
    [
        ("10.3.0", "fp16", {"dla_core": 0}, True),  # weakly typed DLA build: FP16 by flag, no Cast layers on the GPU
        ("10.16.1.11", "fp16", {"dla_core": 1}, True),
        ("11.4.0.106", "fp16", {"dla_core": 0}, False),  # strongly typed: the FP16 ONNX
        ("10.3.0", "fp16", {}, False),  # no DLA: the FP16 ONNX
        ("10.3.0", "int8", {"dla_core": 0}, False),  # Q/DQ comes from the ONNX
        (None, "fp16", {"dla_core": 0}, False),  # version unknown: convert, as everywhere else
    ],
)
def test_who_makes_fp16(version: str | None, precision: str, options: dict[str, object], from_fp32: bool) -> None:
    reason = ENTRY.capabilities.precision_from_fp32(plan(version, precision, **options))
    assert (reason is not None) is from_fp32
    if reason is not None:
        assert "FP16 builder flag" in reason
        assert version is not None
        assert version in reason


def test_onnxruntime_always_leaves_conversion_to_load() -> None:
    from edgerun.runtime.backends.onnxruntime_backend import ENTRY as ORT

    assert ORT.capabilities.precision_from_fp32(plan("10.3.0", dla_core=0)) is None
