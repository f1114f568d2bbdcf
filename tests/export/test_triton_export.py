"""`edgerun export triton`: configs parsed with Triton's own protobuf schema, every field checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerun import ConfigError, InputError
from edgerun.cli.main import main
from edgerun.export.triton import export_triton

from .. import onnx_factory

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] (in the test extra) ships Triton's schema"
)
from google.protobuf import text_format  # noqa: E402


def parse(path: Path) -> object:
    """Parse config.pbtxt as inference.ModelConfig: an unknown field or a bad enum fails here."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_onnx_platform_config_has_every_field(tmp_path: Path) -> None:
    result = export_triton(
        "ppocr-cls", tmp_path, max_batch_size=16, preferred_batch_sizes=[4, 8], max_queue_delay_us=500,
        instances=2, kind="cpu",
    )  # fmt: skip
    config = parse(result.folder / "config.pbtxt")
    assert (config.name, config.platform, config.max_batch_size) == ("ppocr-cls", "onnxruntime_onnx", 16)
    assert (result.folder / "1" / "model.onnx").stat().st_size > 0
    (x,) = config.input
    assert (x.name, x.data_type, list(x.dims)) == ("x", model_config_pb2.TYPE_FP32, [3, -1, -1])  # no batch dim
    (y,) = config.output
    assert (y.data_type, list(y.dims)) == (model_config_pb2.TYPE_FP32, [2])
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == [4, 8]
    assert batching.max_queue_delay_microseconds == 500
    assert batching.default_queue_policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    assert not config.optimization.cuda.graphs


def test_tensorrt_platform_uses_the_cached_engine_and_cuda_graphs(tmp_path: Path) -> None:
    engine = tmp_path / "cache" / "abc.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"serialized engine bytes")
    engine.with_suffix(".json").write_text(json.dumps({"key": {"tensorrt": "10.3.0"}}))
    result = export_triton("digits-student", tmp_path / "repo", engine=engine, max_batch_size=8)
    config = parse(result.folder / "config.pbtxt")
    assert (config.platform, result.tensorrt_version) == ("tensorrt_plan", "10.3.0")
    assert (result.folder / "1" / "model.plan").read_bytes() == b"serialized engine bytes"
    assert config.optimization.cuda.graphs
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.input[0].dims) == [1, 8, 8]


def test_an_engine_from_another_tensorrt_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgerun.runtime.device

    engine = tmp_path / "e.engine"
    engine.write_bytes(b"x")
    engine.with_suffix(".json").write_text(json.dumps({"key": {"tensorrt": "10.16.0"}}))
    monkeypatch.setattr(edgerun.runtime.device, "_tensorrt_version", lambda: "10.3.0")
    with pytest.raises(ConfigError, match=r"built with TensorRT 10\.16\.0, this machine has 10\.3\.0"):
        export_triton("digits-student", tmp_path / "repo", engine=engine)
    (tmp_path / "bare.engine").write_bytes(b"x")
    with pytest.raises(InputError, match="no readable edgerun manifest"):
        export_triton("digits-student", tmp_path / "repo", engine=tmp_path / "bare.engine")


def test_a_fixed_batch_model_exports_only_without_batching(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=1), tmp_path / "fixed.onnx")
    with pytest.raises(ConfigError, match="--max-batch-size 0"):
        export_triton(path, tmp_path / "repo", max_batch_size=8)
    result = export_triton(path, tmp_path / "repo")  # unbatchable: 0 by default, with the reason
    assert any("fixes its batch at 1" in note for note in result.notes)
    config = parse(result.folder / "config.pbtxt")
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert config.input[0].dims[0] == 1  # the batch dim stays when Triton does not batch


def test_an_existing_model_folder_needs_force_and_bad_sizes_are_refused(tmp_path: Path) -> None:
    export_triton("digits-student", tmp_path, name="m")
    with pytest.raises(ConfigError, match="--force"):
        export_triton("ppocr-cls", tmp_path, name="m")
    replaced = export_triton("ppocr-cls", tmp_path, name="m", force=True)
    assert parse(replaced.folder / "config.pbtxt").input[0].name == "x"
    with pytest.raises(ConfigError, match=r"preferred batch sizes \[16\] are outside 1..8"):
        export_triton("ppocr-cls", tmp_path, name="n", preferred_batch_sizes=[4, 16])


def test_the_cli_writes_a_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", "triton", "digits-student", "--repository", str(tmp_path), "--preferred-batch-sizes", "2,4"]
    assert main(args) == 0
    assert "onnxruntime_onnx" in capsys.readouterr().out
    assert list(parse(tmp_path / "digits-student" / "config.pbtxt").dynamic_batching.preferred_batch_size) == [2, 4]
    assert main(args) == 1  # exists: refused without --force
    assert "--force" in capsys.readouterr().err
