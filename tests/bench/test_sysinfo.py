"""`edgerun.bench.sysinfo`: system facts and thermal monitoring on fake trees of an x86 VM, a Jetson and a Pi."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.bench import sysinfo
from edgerun.bench.sysinfo import SystemInfo, ThermalMonitor, parse_nvpmodel, system_info
from edgerun.runtime.device import KINDS

THERMAL = "sys/devices/virtual/thermal"
CPUFREQ = "sys/devices/system/cpu/cpu0/cpufreq"
PI_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
MONITOR_THREAD = "edgerun-thermal-monitor"

# `nvpmodel -q` as JetPack prints it: the mode name, then its number; some boards warn first.
NVPMODEL_ORIN = "NV Power Mode: MAXN\n0\n"
NVPMODEL_NANO_WARNING = "NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n"


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path relative to ``root`` -> text) and return ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def zone(n: int, kind: str, millidegrees: int | str, trips: Sequence[tuple[str, int | str]] = ()) -> dict[str, str]:
    """The files of ``thermal_zone{n}``: type, temp and trip points (type, millidegrees)."""
    folder = f"{THERMAL}/thermal_zone{n}"
    files = {f"{folder}/type": f"{kind}\n", f"{folder}/temp": f"{millidegrees}\n"}
    for i, (trip_type, trip_temp) in enumerate(trips):
        files[f"{folder}/trip_point_{i}_type"] = f"{trip_type}\n"
        files[f"{folder}/trip_point_{i}_temp"] = f"{trip_temp}\n"
    return files


def cpufreq(governor: str, cur_khz: int | str, max_khz: int | str) -> dict[str, str]:
    return {
        f"{CPUFREQ}/scaling_governor": f"{governor}\n",
        f"{CPUFREQ}/scaling_cur_freq": f"{cur_khz}\n",
        f"{CPUFREQ}/cpuinfo_max_freq": f"{max_khz}\n",
    }


def x86_vm(root: Path) -> Path:
    """A cloud VM: cpufreq with the performance governor, no thermal zones, no Pi firmware."""
    return write(root, cpufreq("performance", 2_400_000, 3_500_000))


def jetson_orin(root: Path) -> Path:
    """An Orin as JetPack 6 lays it out: sw-throttle (passive) and hot trips, a fan (active) trip."""
    cpu_trips = [("critical", 102_500), ("hot", 100_000), ("passive", 99_000), ("active", 46_000)]
    return write(
        root,
        {
            **cpufreq("schedutil", 1_984_000, 2_201_600),
            **zone(0, "cpu-thermal", 47_500, cpu_trips),
            **zone(1, "gpu-thermal", 45_968, [("critical", 102_500), ("passive", 99_000)]),
            **zone(2, "tj-thermal", 48_031, [("critical", 104_500), ("hot", 101_000)]),
        },
    )


def raspberry_pi(root: Path, throttled: str = "0") -> Path:
    """A Pi 4B on Raspberry Pi OS: ondemand, one zone with only a critical trip, firmware get_throttled."""
    return write(
        root,
        {
            **cpufreq("ondemand", 600_000, 1_800_000),
            **zone(0, "cpu-thermal", 52_582, [("critical", 110_000)]),
            PI_THROTTLED: f"{throttled}\n",
        },
    )


class Runner:
    """An injected command runner that records its calls and answers with canned output."""

    def __init__(self, output: str | None) -> None:
        self.output = output
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str | None:
        self.calls.append(list(argv))
        return self.output


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == MONITOR_THREAD]


# --- system_info -----------------------------------------------------------------------------------


def test_x86_vm(tmp_path: Path) -> None:
    runner = Runner(NVPMODEL_ORIN)
    info = system_info("cpu", root=x86_vm(tmp_path), run_command=runner)
    assert info == SystemInfo(governor="performance", cpu_mhz=2400.0, cpu_max_mhz=3500.0)
    assert info.temperatures_c == {}
    assert info.nvpmodel is None
    assert info.throttled is None
    assert runner.calls == []


def test_jetson_reads_power_mode_clocks_and_zones(tmp_path: Path) -> None:
    runner = Runner(NVPMODEL_ORIN)
    info = system_info("jetson", root=jetson_orin(tmp_path), run_command=runner)
    assert runner.calls == [["nvpmodel", "-q"]]
    assert info.nvpmodel == "MAXN"
    assert info.governor == "schedutil"
    assert info.cpu_mhz == pytest.approx(1984.0)
    assert info.cpu_max_mhz == pytest.approx(2201.6)
    assert info.temperatures_c == {"cpu-thermal": 47.5, "gpu-thermal": 45.968, "tj-thermal": 48.031}
    assert info.throttled is None


def test_power_mode_found_after_a_warning_line(tmp_path: Path) -> None:
    info = system_info("jetson", root=jetson_orin(tmp_path), run_command=Runner(NVPMODEL_NANO_WARNING))
    assert info.nvpmodel == "15W"


@pytest.mark.parametrize(
    ("output", "mode"),
    [
        ("NV Power Mode: MAXN\n0\n", "MAXN"),
        ("NV Power Mode: MODE_30W\n3\n", "MODE_30W"),
        ("NV Power Mode:  15W  \n2\n", "15W"),
        ("NVPM ERROR: failed to read PARAM CPU_ONLINE\n", None),
        ("0\n", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_nvpmodel(output: str | None, mode: str | None) -> None:
    assert parse_nvpmodel(output) == mode


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "jetson"])
def test_nvpmodel_is_asked_only_on_jetson(tmp_path: Path, kind: str) -> None:
    runner = Runner(NVPMODEL_ORIN)
    assert system_info(kind, root=jetson_orin(tmp_path), run_command=runner).nvpmodel is None
    assert runner.calls == []


def test_a_failing_nvpmodel_leaves_the_power_mode_unknown(tmp_path: Path) -> None:
    def broken(argv: Sequence[str]) -> str | None:
        raise RuntimeError("nvpmodel crashed")

    root = jetson_orin(tmp_path)
    assert system_info("jetson", root=root, run_command=broken).nvpmodel is None
    info = system_info("jetson", root=root, run_command=Runner(None))
    assert info.nvpmodel is None
    assert info.governor == "schedutil"  # the rest is still read


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown device kind 'Jetson'"):
        system_info("Jetson", root=tmp_path)


def fake_program(folder: Path, name: str, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_default_runner_runs_nvpmodel_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_program(tmp_path / "bin", "nvpmodel", f'[ "$1" = "-q" ] || exit 2\nprintf "{NVPMODEL_ORIN}"')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert system_info("jetson", root=tmp_path / "root").nvpmodel == "MAXN"


@pytest.mark.parametrize(
    ("script", "why"),
    [(None, "not on PATH"), ("exit 1", "fails"), ("sleep 5", "hangs"), ("echo nonsense", "says nothing useful")],
)
def test_default_runner_gives_up_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None, why: str
) -> None:
    if script is not None:
        fake_program(tmp_path / "bin", "nvpmodel", script)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(sysinfo, "COMMAND_TIMEOUT_S", 0.3)
    started = time.perf_counter()
    assert system_info("jetson", root=tmp_path / "root").nvpmodel is None, why
    assert time.perf_counter() - started < 3  # the hanging one is cut off by the timeout


def test_raspberry_pi(tmp_path: Path) -> None:
    info = system_info("raspberry-pi", root=raspberry_pi(tmp_path))
    assert info.governor == "ondemand"
    assert info.cpu_mhz == 600.0
    assert info.cpu_max_mhz == 1800.0
    assert info.temperatures_c == {"cpu-thermal": 52.582}
    assert info.throttled == "0x0"


def test_to_dict_is_json(tmp_path: Path) -> None:
    info = system_info("jetson", root=jetson_orin(tmp_path), run_command=Runner(NVPMODEL_ORIN))
    data = json.loads(json.dumps(info.to_dict()))
    assert data["nvpmodel"] == "MAXN"
    assert data["temperatures_c"]["cpu-thermal"] == 47.5
    assert set(data) == {"governor", "cpu_mhz", "cpu_max_mhz", "nvpmodel", "temperatures_c", "throttled"}


def test_missing_root_gives_all_unknown(tmp_path: Path) -> None:
    assert system_info("jetson", root=tmp_path / "nowhere", run_command=Runner(None)) == SystemInfo()


def test_garbage_and_unreadable_files_are_unknown_or_skipped(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **cpufreq("\x00\xff garbage \x01", "fast", "nan"),
            **zone(0, "cpu-thermal", "N/A"),  # sensor not ready
            **zone(1, "gpu-thermal", ""),
            **zone(2, "soc-thermal", 51_000, [("passive", "zzz"), ("hot", -274_000)]),
            **zone(3, "ao-thermal", "inf"),
            PI_THROTTLED: "not hex\n",
        },
    )
    (tmp_path / THERMAL / "thermal_zone4").mkdir()
    (tmp_path / THERMAL / "thermal_zone4" / "temp").mkdir()  # EISDIR on read (chmod does not stop root)
    (tmp_path / THERMAL / "cooling_device0").mkdir()  # not a zone
    info = system_info("raspberry-pi", root=tmp_path)
    assert info == SystemInfo(temperatures_c={"soc-thermal": 51.0})
    with ThermalMonitor(root=tmp_path) as monitor:
        pass
    assert monitor.max_temperatures_c == {"soc-thermal": 51.0}
    assert not monitor.throttled  # the garbage and disabled trips are ignored
    assert monitor.reasons == []


def test_a_file_where_the_thermal_folder_should_be(tmp_path: Path) -> None:
    write(tmp_path, {THERMAL: "oops\n", f"{CPUFREQ}/scaling_cur_freq": "-5\n"})
    assert system_info("cpu", root=tmp_path) == SystemInfo()


def test_zones_with_the_same_type_keep_apart(tmp_path: Path) -> None:
    write(tmp_path, {**zone(0, "acpitz", 27_800), **zone(1, "acpitz", 29_800), **zone(10, "x86_pkg_temp", 41_000)})
    temperatures = system_info("cpu", root=tmp_path).temperatures_c
    assert temperatures == {"acpitz": 27.8, "acpitz (thermal_zone1)": 29.8, "x86_pkg_temp": 41.0}


def test_a_zone_without_a_type_is_named_by_its_folder(tmp_path: Path) -> None:
    write(tmp_path, {f"{THERMAL}/thermal_zone3/temp": "33000\n"})
    assert system_info("cpu", root=tmp_path).temperatures_c == {"thermal_zone3": 33.0}


@settings(max_examples=60, deadline=None)
@given(millidegrees=st.integers(min_value=-40_000, max_value=150_000))
def test_temperatures_are_millidegrees(millidegrees: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = write(Path(folder), zone(0, "cpu-thermal", millidegrees))
        assert system_info("cpu", root=root).temperatures_c == {"cpu-thermal": millidegrees / 1000}


@settings(max_examples=60, deadline=None)
@given(mask=st.integers(min_value=0, max_value=0xFFFFF), prefix=st.sampled_from(["", "0x", "0X"]))
def test_pi_throttled_masks(mask: int, prefix: str) -> None:
    """The firmware file holds bare hex; vcgencmd prints 0x: both parse, and only 0x2/0x4 mean throttling."""
    with tempfile.TemporaryDirectory() as folder:
        root = raspberry_pi(Path(folder), throttled=f"{prefix}{mask:x}")
        assert system_info("raspberry-pi", root=root).throttled == f"0x{mask:x}"
        monitor = ThermalMonitor(root=root)
        monitor.sample_once()
    assert monitor.throttled == bool(mask & 0x6)
    assert monitor.throttled == bool(monitor.reasons)


# --- ThermalMonitor --------------------------------------------------------------------------------


def set_temp(root: Path, n: int, millidegrees: int) -> None:
    (root / THERMAL / f"thermal_zone{n}" / "temp").write_text(f"{millidegrees}\n")


def test_a_zone_crossing_its_passive_trip_is_throttling(tmp_path: Path) -> None:
    write(tmp_path, zone(0, "cpu-thermal", 80_000, [("critical", 105_000), ("passive", 85_000)]))
    monitor = ThermalMonitor(root=tmp_path)
    monitor.sample_once()
    assert not monitor.throttled
    assert monitor.reasons == []
    set_temp(tmp_path, 0, 86_000)
    monitor.sample_once()
    set_temp(tmp_path, 0, 70_000)  # cooled down again: it was still seen
    monitor.sample_once()
    assert monitor.throttled
    assert monitor.reasons == ["cpu-thermal reached 86.0 C (passive trip 85.0 C)"]
    assert monitor.max_temperatures_c == {"cpu-thermal": 86.0}
    assert monitor.samples == 3


def test_the_highest_trip_reached_is_named(tmp_path: Path) -> None:
    write(tmp_path, zone(0, "tj-thermal", 99_500, [("passive", 99_000), ("hot", 101_000), ("critical", 104_500)]))
    monitor = ThermalMonitor(root=tmp_path)
    monitor.sample_once()
    set_temp(tmp_path, 0, 101_500)
    monitor.sample_once()
    assert monitor.reasons == ["tj-thermal reached 101.5 C (hot trip 101.0 C)"]


def test_fan_trips_are_not_throttling(tmp_path: Path) -> None:
    """An Orin idles above its fan (active) trip: that is cooling, not throttling."""
    with ThermalMonitor(root=jetson_orin(tmp_path)) as monitor:
        pass
    assert monitor.max_temperatures_c["cpu-thermal"] == 47.5
    assert not monitor.throttled


def test_pi_throttling_seen_during_the_run(tmp_path: Path) -> None:
    root = raspberry_pi(tmp_path, throttled="0")
    monitor = ThermalMonitor(root=root)
    monitor.sample_once()
    assert not monitor.throttled
    (root / PI_THROTTLED).write_text("50005\n")
    monitor.sample_once()
    (root / PI_THROTTLED).write_text("50000\n")  # only the sticky "has occurred" bits remain
    monitor.sample_once()
    assert monitor.throttled
    [reason] = monitor.reasons
    assert "currently throttled (0x4)" in reason
    assert "under-voltage (0x1)" in reason
    assert "0x50005" in reason
    assert "frequency capped" not in reason


def test_sticky_pi_bits_alone_are_not_throttling(tmp_path: Path) -> None:
    """0x50000: throttling happened since boot, maybe long before this run."""
    monitor = ThermalMonitor(root=raspberry_pi(tmp_path, throttled="50000"))
    monitor.sample_once()
    assert not monitor.throttled


@settings(max_examples=40, deadline=None)
@given(temps=st.lists(st.integers(min_value=20_000, max_value=110_000), min_size=1, max_size=8))
def test_monitor_keeps_the_maximum_and_compares_it_with_the_trip(temps: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = write(Path(folder), zone(0, "cpu-thermal", temps[0], [("passive", 90_000)]))
        monitor = ThermalMonitor(root=root)
        for millidegrees in temps:
            set_temp(root, 0, millidegrees)
            monitor.sample_once()
    assert monitor.max_temperatures_c == {"cpu-thermal": max(temps) / 1000}
    assert monitor.throttled == (max(temps) >= 90_000)


def test_monitor_samples_in_the_background_and_stops_its_thread(tmp_path: Path) -> None:
    write(
        tmp_path, {**zone(0, "cpu-thermal", 50_000, [("passive", 85_000)]), **cpufreq("ondemand", 600_000, 1_000_000)}
    )
    before = monitor_threads()
    with ThermalMonitor(root=tmp_path, interval_s=0.01) as monitor:
        assert len(monitor_threads()) == len(before) + 1
        set_temp(tmp_path, 0, 88_000)
        deadline = time.monotonic() + 5
        while not monitor.throttled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitor.throttled  # seen by the thread, before the exit sample
        set_temp(tmp_path, 0, 50_000)
        (tmp_path / CPUFREQ / "scaling_cur_freq").write_text("1500000\n")
    assert monitor_threads() == before
    assert monitor.max_temperatures_c == {"cpu-thermal": 88.0}
    assert (monitor.min_cpu_mhz, monitor.max_cpu_mhz) == (600.0, 1500.0)
    assert monitor.samples >= 3


def test_monitor_stops_when_the_benchmark_raises(tmp_path: Path) -> None:
    before = monitor_threads()
    with pytest.raises(KeyboardInterrupt), ThermalMonitor(root=x86_vm(tmp_path), interval_s=0.01):
        raise KeyboardInterrupt
    assert monitor_threads() == before


def test_a_short_run_is_sampled_on_entry_and_exit(tmp_path: Path) -> None:
    """A run shorter than the interval still sees the temperature at its end."""
    write(tmp_path, zone(0, "cpu-thermal", 60_000, [("passive", 85_000)]))
    with ThermalMonitor(root=tmp_path, interval_s=60) as monitor:
        set_temp(tmp_path, 0, 85_000)
    assert monitor.samples == 2
    assert monitor.reasons == ["cpu-thermal reached 85.0 C (passive trip 85.0 C)"]


def test_monitor_refuses_to_start_twice_and_bad_intervals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        ThermalMonitor(root=tmp_path, interval_s=0)
    with ThermalMonitor(root=tmp_path, interval_s=0.01) as monitor, pytest.raises(RuntimeError, match="already"):
        monitor.start()
    assert monitor_threads() == []


# --- this machine ----------------------------------------------------------------------------------


def test_this_machine() -> None:
    """Whatever this machine has, reading it never raises and gives well-typed facts."""
    from edgerun.runtime.device import DeviceProfile

    kind = DeviceProfile.detect().kind
    info = system_info(kind)
    assert info.governor is None or info.governor.strip() == info.governor != ""
    for mhz in (info.cpu_mhz, info.cpu_max_mhz):
        assert mhz is None or mhz > 0
    assert all(isinstance(c, float) for c in info.temperatures_c.values())
    json.dumps(info.to_dict())
    with ThermalMonitor(interval_s=0.01) as monitor:
        time.sleep(0.05)
    assert set(monitor.max_temperatures_c) <= {z.label for z in monitor.zones}
    if not os.path.exists("/sys/devices/virtual/thermal"):
        assert info.temperatures_c == {}
        assert monitor.max_temperatures_c == {}
