"""`DeviceProfile.detect()` on fake trees of real devices, on broken trees and on this machine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerun.runtime.defaults import DeviceDefaults
from edgerun.runtime.device import KINDS, DeviceProfile

DEVICES = Path(__file__).resolve().parents[1] / "fixtures" / "devices"
TREES = ("jetson-orin", "jetson-xavier", "rpi4", "x86-desktop", "x86-cpu-only")
GIB = 1024**3


def _load_make_trees() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_trees", DEVICES / "make_trees.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def detect(name: str) -> DeviceProfile:
    return DeviceProfile.detect(root=DEVICES / name)


def test_committed_trees_are_what_make_trees_writes(tmp_path: Path) -> None:
    written = _load_make_trees().write_trees(tmp_path)
    expected = {p.relative_to(tmp_path): p.read_bytes() for p in written}
    committed = {
        p.relative_to(DEVICES): p.read_bytes()
        for name in TREES
        for p in (DEVICES / name).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted({path.parts[0] for path in expected}) == sorted(TREES)
    assert committed == expected


def test_device_tree_strings_keep_their_nul_bytes() -> None:
    assert (DEVICES / "jetson-orin/proc/device-tree/model").read_bytes() == b"NVIDIA Jetson AGX Orin Developer Kit\x00"
    assert (DEVICES / "rpi4/proc/device-tree/compatible").read_bytes() == b"raspberrypi,4-model-b\x00brcm,bcm2711\x00"


# --- the fake trees ---------------------------------------------------------------------------


def test_jetson_orin() -> None:
    p = detect("jetson-orin")
    assert p.kind == "jetson"
    assert p.model == "NVIDIA Jetson AGX Orin Developer Kit"
    assert p.arch == "aarch64"
    assert p.cpu == "Cortex-A78AE"
    assert p.cores == 12
    assert p.memory_bytes == 64335836 * 1024
    assert p.cpu_features == ("asimd", "asimddp", "asimdhp")
    assert p.int8_dot_product
    assert (p.gpu_name, p.compute_capability) == ("Orin", "8.7")
    assert (p.l4t, p.jetpack) == ("36.4.0", "6.1/6.2")
    assert p.nvidia_driver is None
    assert p.versions["cuda"] == "12.6.68"
    assert p.has_nvidia_gpu


def test_jetson_xavier() -> None:
    p = detect("jetson-xavier")
    assert p.kind == "jetson"
    assert p.model == "NVIDIA Jetson AGX Xavier Developer Kit"
    assert p.arch == "aarch64"
    assert p.cpu == "NVIDIA Carmel"
    assert p.cores == 8
    assert p.memory_bytes == 31918700 * 1024
    assert p.cpu_features == ("asimd", "asimdhp")
    assert not p.int8_dot_product, "Carmel is Armv8.2 without the dot-product extension"
    assert (p.gpu_name, p.compute_capability) == ("Xavier", "7.2")
    assert (p.l4t, p.jetpack) == ("35.4.1", "5.1.2")
    assert p.versions["cuda"] == "11.4.19"
    assert p.has_nvidia_gpu


def test_raspberry_pi_4() -> None:
    p = detect("rpi4")
    assert p.kind == "raspberry-pi"
    assert p.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert p.arch == "aarch64"
    assert p.cpu == "Cortex-A72"
    assert p.cores == 4, "the Pi's trailing Hardware/Revision/Serial/Model lines are not processors"
    assert p.memory_bytes == 3884428 * 1024
    assert p.cpu_features == ("asimd",)
    assert not p.int8_dot_product
    assert (p.gpu_name, p.compute_capability, p.nvidia_driver) == (None, None, None)
    assert (p.l4t, p.jetpack) == (None, None)
    assert p.versions["cuda"] is None
    assert not p.has_nvidia_gpu


def test_x86_desktop_with_nvidia_gpu() -> None:
    p = detect("x86-desktop")
    assert p.kind == "cuda-gpu"
    assert p.model == "NVIDIA GeForce RTX 3090"
    assert p.gpu_name == "NVIDIA GeForce RTX 3090"
    assert p.nvidia_driver == "550.54.14"
    assert p.compute_capability is None, "asked of the live CUDA driver only, never of a fake tree"
    assert p.arch == "x86_64"
    assert p.cpu == "AMD Ryzen 9 5950X 16-Core Processor"
    assert p.cores == 16
    assert p.memory_bytes == 65769348 * 1024
    assert p.cpu_features == ("avx2",)
    assert not p.int8_dot_product
    assert (p.l4t, p.jetpack) == (None, None)
    assert p.versions["cuda"] == "12.4.131"
    assert p.has_nvidia_gpu


def test_x86_cpu_only() -> None:
    p = detect("x86-cpu-only")
    assert p.kind == "cpu"
    assert p.model == p.cpu == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert p.arch == "x86_64"
    assert p.cores == 2
    assert p.memory_bytes == 7941764 * 1024
    assert p.cpu_features == ("avx2", "avx512f", "avx512_vnni")
    assert p.int8_dot_product
    assert (p.gpu_name, p.compute_capability, p.nvidia_driver) == (None, None, None)
    assert p.versions["cuda"] is None
    assert not p.has_nvidia_gpu


@pytest.mark.parametrize("name", TREES)
def test_to_dict_is_plain_data(name: str) -> None:
    profile = detect(name)
    data = profile.to_dict()
    assert data["kind"] == profile.kind
    assert data["cpu_features"] == list(profile.cpu_features)
    assert set(data["versions"]) >= {"onnxruntime", "onnx", "numpy", "tensorrt", "cuda", "cuda-python"}
    assert data["versions"]["onnxruntime"], "package metadata of the installed onnxruntime"


# --- the parts that identify a device on their own ----------------------------------------------


def write(root: Path, relative: str, content: bytes | str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def test_nv_tegra_release_alone_makes_a_jetson(tmp_path: Path) -> None:
    write(tmp_path, "etc/nv_tegra_release", (DEVICES / "jetson-orin/etc/nv_tegra_release").read_bytes())
    p = DeviceProfile.detect(tmp_path)
    assert p.kind == "jetson"
    assert p.model == "NVIDIA Jetson"
    assert (p.l4t, p.jetpack) == ("36.4.0", "6.1/6.2")
    assert (p.gpu_name, p.compute_capability) == (None, None)


def test_tegra_compatible_alone_makes_a_jetson(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/compatible", b"nvidia,p3767-0005\x00nvidia,p3768-0000\x00nvidia,tegra234\x00")
    p = DeviceProfile.detect(tmp_path)
    assert p.kind == "jetson"
    assert (p.gpu_name, p.compute_capability) == ("Orin", "8.7")
    assert (p.l4t, p.jetpack) == (None, None)


def test_unknown_l4t_release_has_no_jetpack_name(tmp_path: Path) -> None:
    write(tmp_path, "etc/nv_tegra_release", "# R99 (release), REVISION: 1.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    p = DeviceProfile.detect(tmp_path)
    assert (p.kind, p.l4t, p.jetpack) == ("jetson", "99.1.0", None)


def test_open_kernel_module_driver_version(tmp_path: Path) -> None:
    write(tmp_path, "proc/driver/nvidia/gpus/0000:41:00.0/information", "Model: \t\t NVIDIA RTX A4000\nIRQ: 1\n")
    write(
        tmp_path,
        "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Fri Aug 16 21:42:42 UTC 2024\n",
    )
    p = DeviceProfile.detect(tmp_path)
    assert (p.kind, p.gpu_name, p.nvidia_driver) == ("cuda-gpu", "NVIDIA RTX A4000", "560.35.03")


def test_nvidia_gpus_folder_without_information_is_no_gpu(tmp_path: Path) -> None:
    (tmp_path / "proc/driver/nvidia/gpus/0000:01:00.0").mkdir(parents=True)
    assert DeviceProfile.detect(tmp_path).kind == "cpu"


@pytest.mark.parametrize(
    ("relative", "content", "expected"),
    [
        ("usr/local/cuda/version.txt", "CUDA Version 10.2.300\n", "10.2.300"),
        ("usr/local/cuda/include/cuda_runtime_api.h", "#define CUDART_VERSION 12020\n", "12.2"),
        ("usr/local/cuda/version.json", '{"cuda_nvcc": {"version": "12.1.105"}}', None),
        ("usr/local/cuda/version.json", "not json", None),
    ],
)
def test_cuda_toolkit_version_sources(tmp_path: Path, relative: str, content: str, expected: str | None) -> None:
    write(tmp_path, relative, content)
    assert DeviceProfile.detect(tmp_path).versions["cuda"] == expected


def test_broken_version_json_falls_back_to_version_txt(tmp_path: Path) -> None:
    write(tmp_path, "usr/local/cuda/version.json", '{"cuda": "12.6"}')
    write(tmp_path, "usr/local/cuda/version.txt", "CUDA Version 11.4.315\n")
    assert DeviceProfile.detect(tmp_path).versions["cuda"] == "11.4.315"


# --- missing and broken trees -----------------------------------------------------------------


def test_empty_root_is_a_plain_cpu(tmp_path: Path) -> None:
    p = DeviceProfile.detect(tmp_path)
    assert p.kind == "cpu"
    assert p.cores == 1
    assert p.cpu_features == ()
    assert not p.int8_dot_product
    assert (p.gpu_name, p.compute_capability, p.nvidia_driver, p.l4t, p.jetpack) == (None,) * 5
    assert p.versions["cuda"] is None
    assert p.model
    assert p.arch
    assert p.cpu
    assert p.memory_bytes >= 0


def test_missing_root_folder_does_not_crash(tmp_path: Path) -> None:
    assert DeviceProfile.detect(tmp_path / "no" / "such" / "root").kind == "cpu"


def test_garbage_cpuinfo_does_not_crash(tmp_path: Path) -> None:
    write(
        tmp_path,
        "proc/cpuinfo",
        b"\xff\xfe\x00garbage\nprocessor\nprocessor :\nCPU part : \nflags\t:\nFeatures\n\x00\x00model name:\n"
        + bytes(range(256)),
    )
    write(tmp_path, "proc/meminfo", b"MemTotal: lots kB\n\xff")
    p = DeviceProfile.detect(tmp_path)
    assert p.kind == "cpu"
    assert p.cores == 1, "'processor :' counts once; 'processor' without a colon does not"
    assert p.cpu_features == ()
    assert p.memory_bytes >= 0


def test_unreadable_entries_are_skipped(tmp_path: Path) -> None:
    # A folder where a file should be raises IsADirectoryError when read: treated as absent.
    for relative in ("proc/cpuinfo", "proc/meminfo", "proc/device-tree/model", "etc/nv_tegra_release"):
        (tmp_path / relative).mkdir(parents=True)
    p = DeviceProfile.detect(tmp_path)
    assert p.kind == "cpu"
    assert p.cores == 1


_cpuinfo_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "processor\t: 0",
                "CPU implementer\t: 0x41",
                "CPU implementer\t: 0x4e",
                "CPU part\t: 0xd42",
                "CPU part\t: 0x004",
                "CPU part\t: 0xzzz",
                "model name\t: ",
                "Features\t: fp asimd asimddp",
                "flags\t\t: avx2 avx512_vnni",
                "",
            ]
        ),
        st.text(max_size=40),
    ),
    max_size=30,
).map("\n".join)


@settings(max_examples=75, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(cpuinfo=st.one_of(st.binary(max_size=400), _cpuinfo_lines.map(str.encode)), model=st.binary(max_size=80))
def test_any_cpuinfo_and_model_bytes_never_make_detect_raise(
    tmp_path_factory: pytest.TempPathFactory, cpuinfo: bytes, model: bytes
) -> None:
    root = tmp_path_factory.mktemp("random-tree")
    write(root, "proc/cpuinfo", cpuinfo)
    write(root, "proc/device-tree/model", model)
    p = DeviceProfile.detect(root)
    assert p.kind in KINDS
    assert p.cores >= 1
    assert isinstance(p.model, str)
    assert p.model
    assert "\x00" not in p.model
    text = cpuinfo.decode(errors="replace")
    assert len(set(p.cpu_features)) == len(p.cpu_features)
    assert all(feature in text for feature in p.cpu_features), "a feature is reported only if cpuinfo lists it"


@settings(max_examples=50, deadline=None, database=None)
@given(model=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and "\x00" not in s))
def test_device_tree_model_is_read_up_to_its_nul(tmp_path_factory: pytest.TempPathFactory, model: str) -> None:
    root = tmp_path_factory.mktemp("model-tree")
    write(root, "proc/device-tree/model", "Raspberry Pi " + model + "\x00")
    p = DeviceProfile.detect(root)
    assert p.kind == "raspberry-pi"
    assert p.model.startswith("Raspberry Pi")
    assert "\x00" not in p.model
    assert "\n" not in p.model


# --- this machine -----------------------------------------------------------------------------


def test_live_machine_is_sane() -> None:
    p = DeviceProfile.detect("/")
    assert p.kind in KINDS
    assert p.cores >= 1
    assert p.memory_bytes > 0
    assert p.arch == os.uname().machine
    if hasattr(os, "sched_getaffinity"):
        assert p.cores <= len(os.sched_getaffinity(0)), "never more threads than this process may use"
    assert p.versions["onnxruntime"]


# --- per-device defaults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "threads", "deadline_ms"),
    [
        ("jetson-orin", 12, 1000 / 30),
        ("jetson-xavier", 8, 1000 / 30),
        ("rpi4", 4, 100.0),
        ("x86-desktop", 16, 1000 / 30),
        ("x86-cpu-only", 1, 100.0),
    ],
)
def test_defaults_for_fake_devices(name: str, threads: int, deadline_ms: float) -> None:
    defaults = DeviceDefaults.for_profile(detect(name))
    assert defaults.threads == threads
    assert defaults.deadline_ms == pytest.approx(deadline_ms)
    assert defaults.backend_order == ("tensorrt", "onnxruntime")
    assert defaults.threads_reason.startswith(f"{detect(name).cores} cores")


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (3, 3), (4, 4), (64, 64)])
def test_threads_one_on_two_cores_or_fewer_else_every_core(cores: int, threads: int) -> None:
    profile = DeviceProfile(kind="cpu", model="test", arch="x86_64", cpu="test", cores=cores, memory_bytes=GIB)
    assert DeviceDefaults.for_profile(profile).threads == threads


# --- regressions: hostile or unusual files ------------------------------------------------------


def test_absurdly_long_numbers_do_not_crash(tmp_path: Path) -> None:
    write(tmp_path, "proc/meminfo", "MemTotal: " + "9" * 5000 + " kB\n")
    write(tmp_path, "usr/local/cuda/include/cuda_runtime_api.h", "#define CUDART_VERSION " + "1" * 5000 + "\n")
    p = DeviceProfile.detect(tmp_path)
    assert p.memory_bytes == 0
    assert p.versions["cuda"] is None


def test_deeply_nested_version_json_does_not_crash(tmp_path: Path) -> None:
    write(tmp_path, "usr/local/cuda/version.json", "[" * 100_000)
    write(tmp_path, "usr/local/cuda/version.txt", "CUDA Version 10.2.300\n")
    assert DeviceProfile.detect(tmp_path).versions["cuda"] == "10.2.300"


def test_an_empty_cpuinfo_field_does_not_take_the_next_line(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t:\nflags\t\t: avx2 avx512_vnni\n")
    p = DeviceProfile.detect(tmp_path)
    assert p.cpu == "unknown"
    assert p.cpu_features == ("avx2", "avx512_vnni")


def test_32_bit_arm_is_not_reported_as_aarch64(tmp_path: Path) -> None:
    write(
        tmp_path,
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nFeatures\t: half thumb fastmult vfp neon\n"
        "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU part\t: 0xd03\n",
    )
    p = DeviceProfile.detect(tmp_path)
    assert p.arch == "armv7l"
    assert p.cpu == "Cortex-A53"


def test_a_fake_root_never_reports_the_host_machine(tmp_path: Path) -> None:
    p = DeviceProfile.detect(tmp_path)
    assert p.memory_bytes == 0
    assert p.arch == "unknown"
    assert p.cpu == "unknown"
