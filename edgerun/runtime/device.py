"""`DeviceProfile.detect()`: what kind of edge device this is, read from the file system.

Everything is read relative to a root folder (``/`` by default) so that tests can point it at
a fake tree of a Jetson Orin, a Raspberry Pi 4B or an x86 desktop. Sources, in order:
``/etc/nv_tegra_release`` and ``/proc/device-tree/{model,compatible}`` (Jetson, Raspberry Pi),
``/proc/driver/nvidia`` (a desktop NVIDIA GPU and its driver), ``/proc/cpuinfo`` and
``/proc/meminfo``, the CUDA toolkit's version files. Library versions come from package
metadata, so detection imports no heavy module.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata, util
from pathlib import Path
from typing import Any

KINDS = ("jetson", "raspberry-pi", "cuda-gpu", "cpu")

# Jetson SoCs by device-tree "compatible" entry: (GPU name, CUDA compute capability).
_TEGRA_SOCS = {
    "tegra264": ("Thor", "11.0"),
    "tegra234": ("Orin", "8.7"),
    "tegra194": ("Xavier", "7.2"),
    "tegra186": ("TX2", "6.2"),
    "tegra210": ("Maxwell (Nano/TX1)", "5.3"),
}

# Arm CPU part numbers (implementer 0x41 Arm Ltd, 0x4e NVIDIA) that edge boards use.
_ARM_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd42"): "Cortex-A78AE",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}

# CPU features that decide whether INT8 / FP16 arithmetic pays on the CPU.
_INTERESTING_CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "avx512_fp16",
    "asimd",
    "asimddp",
    "asimdhp",
    "i8mm",
)

# L4T release -> JetPack release, for the user-facing name only.
_JETPACK_BY_L4T = {
    "38.2": "7.0",
    "36.4": "6.1/6.2",
    "36.3": "6.0",
    "35.6": "5.1.4",
    "35.5": "5.1.3",
    "35.4": "5.1.2",
    "35.3": "5.1.1",
    "32.7": "4.6.x",
}


@dataclass(frozen=True)
class DeviceProfile:
    """The device edgerun runs on, as far as files and package metadata tell."""

    kind: str
    """``jetson``, ``raspberry-pi``, ``cuda-gpu`` or ``cpu``."""
    model: str
    arch: str
    cpu: str
    cores: int
    memory_bytes: int
    cpu_features: tuple[str, ...] = ()
    gpu_name: str | None = None
    compute_capability: str | None = None
    nvidia_driver: str | None = None
    l4t: str | None = None
    jetpack: str | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    """onnxruntime, onnx, numpy, tensorrt, cuda (toolkit), cuda-python; None if absent."""

    @property
    def has_nvidia_gpu(self) -> bool:
        return self.kind in ("jetson", "cuda-gpu")

    @property
    def int8_dot_product(self) -> bool:
        """CPU has int8 dot-product instructions (VNNI / AMX on x86, dotprod on Arm)."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} & set(self.cpu_features))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_features"] = list(self.cpu_features)
        return data

    @classmethod
    def detect(cls, root: str | os.PathLike[str] = "/") -> DeviceProfile:
        """Detect the device from the file tree under ``root`` (``/`` on a real device)."""
        return _Detector(Path(root)).profile()


@cache
def current_device() -> DeviceProfile:
    """The profile of the device this process runs on (detected once, then cached)."""
    return DeviceProfile.detect()


class _Detector:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.is_live = root.resolve() == Path("/")

    def read(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text(errors="replace").replace("\x00", "\n").strip()
        except OSError:
            return None

    def profile(self) -> DeviceProfile:
        cpuinfo = self.read("proc/cpuinfo") or ""
        dt_model = _first_line(self.read("proc/device-tree/model"))
        compatible = (self.read("proc/device-tree/compatible") or "").split()
        tegra_release = self.read("etc/nv_tegra_release")
        arch = _arch(cpuinfo, self.is_live)
        common: dict[str, Any] = {
            "arch": arch,
            "cpu": _cpu_name(cpuinfo),
            "cores": self.cores(cpuinfo),
            "memory_bytes": _memory_bytes(self.read("proc/meminfo"), self.is_live),
            "cpu_features": _cpu_features(cpuinfo),
            "versions": self.versions(),
        }
        soc = next((_TEGRA_SOCS[c.split(",")[-1]] for c in compatible if c.split(",")[-1] in _TEGRA_SOCS), None)
        if tegra_release is not None or soc is not None or (dt_model or "").startswith("NVIDIA Jetson"):
            l4t = _l4t_version(tegra_release)
            return DeviceProfile(
                kind="jetson",
                model=dt_model or "NVIDIA Jetson",
                gpu_name=soc[0] if soc else None,
                compute_capability=soc[1] if soc else None,
                l4t=l4t,
                jetpack=_JETPACK_BY_L4T.get(".".join((l4t or "").split(".")[:2])),
                **common,
            )
        if dt_model and dt_model.startswith("Raspberry Pi"):
            return DeviceProfile(kind="raspberry-pi", model=dt_model, **common)
        gpu_name = self.nvidia_gpu_name()
        if gpu_name is not None:
            return DeviceProfile(
                kind="cuda-gpu",
                model=gpu_name,
                gpu_name=gpu_name,
                compute_capability=self.compute_capability(),
                nvidia_driver=self.nvidia_driver(),
                **common,
            )
        return DeviceProfile(kind="cpu", model=dt_model or common["cpu"], **common)

    def cores(self, cpuinfo: str) -> int:
        listed = len(re.findall(r"^processor\s*:", cpuinfo, flags=re.MULTILINE))
        if self.is_live:
            usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            return min(listed, usable) if listed else usable
        return listed or 1

    def nvidia_gpu_name(self) -> str | None:
        gpus = self.root / "proc/driver/nvidia/gpus"
        try:
            boards = sorted(gpus.iterdir())
        except OSError:
            return None
        for board in boards:
            info = self.read(str((board / "information").relative_to(self.root)))
            match = re.search(r"^Model:\s*(.+)$", info or "", flags=re.MULTILINE)
            if match:
                return match.group(1).strip()
        return None

    def nvidia_driver(self) -> str | None:
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", self.read("proc/driver/nvidia/version") or "")
        return match.group(1) if match else None

    def compute_capability(self) -> str | None:
        """Asked of the CUDA driver through cuda-python, when it is installed and this is live."""
        if not self.is_live or util.find_spec("cuda") is None:
            return None
        try:
            from cuda.bindings import driver  # type: ignore[import-not-found,unused-ignore]

            (err,) = driver.cuInit(0)
            if err != driver.CUresult.CUDA_SUCCESS:
                return None
            attr = driver.CUdevice_attribute
            err, major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0)
            err2, minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0)
            if err != driver.CUresult.CUDA_SUCCESS or err2 != driver.CUresult.CUDA_SUCCESS:
                return None
            return f"{major}.{minor}"
        except Exception:  # any binding or driver problem means "unknown", never a crash
            return None

    def versions(self) -> dict[str, str | None]:
        return {
            "onnxruntime": _package_version("onnxruntime", "onnxruntime-gpu"),
            "onnx": _package_version("onnx"),
            "numpy": _package_version("numpy"),
            "opencv": _package_version("opencv-python-headless", "opencv-python"),
            "tensorrt": _tensorrt_version(),
            "cuda": self.cuda_toolkit_version(),
            "cuda-python": _package_version("cuda-python", "cuda-bindings"),
            "python": platform.python_version(),
        }

    def cuda_toolkit_version(self) -> str | None:
        import json

        text = self.read("usr/local/cuda/version.json")
        if text:
            try:
                return str(json.loads(text)["cuda"]["version"])
            except (ValueError, KeyError, TypeError, RecursionError):
                pass
        match = re.search(r"CUDA Version\s+([\d.]+)", self.read("usr/local/cuda/version.txt") or "")
        if match:
            return match.group(1)
        header = self.read("usr/local/cuda/include/cuda_runtime_api.h") or ""
        match = re.search(r"#define\s+CUDART_VERSION\s+(\d{1,9})\b", header)
        if match:
            number = int(match.group(1))
            return f"{number // 1000}.{number % 1000 // 10}"
        return None


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return text.splitlines()[0].strip() or None


def _arch(cpuinfo: str, is_live: bool) -> str:
    if is_live:
        return platform.machine()
    if re.search(r"^CPU implementer", cpuinfo, flags=re.MULTILINE):
        # ARMv8 boards running a 32-bit OS report architecture 7 like real ARMv7 parts.
        return "aarch64" if _cpuinfo_field(cpuinfo, "CPU architecture") == "8" else "armv7l"
    return "x86_64" if re.search(r"^flags", cpuinfo, flags=re.MULTILINE) else "unknown"


def _cpuinfo_field(cpuinfo: str, key: str) -> str | None:
    match = re.search(rf"^{re.escape(key)}[ \t]*:[ \t]*(\S.*)$", cpuinfo, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _cpu_name(cpuinfo: str) -> str:
    """x86 reports a model name; Arm reports implementer and part numbers (the name, if any, is generic)."""
    implementer = (_cpuinfo_field(cpuinfo, "CPU implementer") or "").lower()
    part = (_cpuinfo_field(cpuinfo, "CPU part") or "").lower()
    if part:
        return _ARM_PARTS.get((implementer, part), f"Arm CPU part {part}")
    return _cpuinfo_field(cpuinfo, "model name") or "unknown"


def _cpu_features(cpuinfo: str) -> tuple[str, ...]:
    flags = set((_cpuinfo_field(cpuinfo, "flags") or _cpuinfo_field(cpuinfo, "Features") or "").split())
    return tuple(f for f in _INTERESTING_CPU_FLAGS if f in flags)


def _memory_bytes(meminfo: str | None, is_live: bool) -> int:
    match = re.search(r"^MemTotal:[ \t]*(\d{1,15})[ \t]*kB", meminfo or "", flags=re.MULTILINE)
    if match:
        return int(match.group(1)) * 1024
    if not is_live:
        return 0
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _l4t_version(tegra_release: str | None) -> str | None:
    # "# R36 (release), REVISION: 4.0, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", tegra_release or "")
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _package_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _tensorrt_version() -> str | None:
    """TensorRT's version without importing it (it loads CUDA); JetPack's apt build has metadata too."""
    if util.find_spec("tensorrt") is None:
        return None
    return _package_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_libs") or "unknown"
