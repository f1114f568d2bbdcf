"""System facts a benchmark report needs: CPU governor and clocks, Jetson power mode, temperatures, throttling.

Everything is read from files under a ``root`` folder (``/`` on a real device) so tests can use fake
trees, as `edgerun.runtime.device` does. Nothing here raises for a missing, unreadable or garbled file or a
failing command: the fact is reported as unknown (None, or left out). Sources: cpufreq
(``/sys/devices/system/cpu/cpu0/cpufreq``), thermal zones (``/sys/devices/virtual/thermal``), the
Raspberry Pi firmware's ``get_throttled``, and ``nvpmodel -q`` on Jetson.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from edgerun.runtime.device import KINDS

__all__ = ["COMMAND_TIMEOUT_S", "SystemInfo", "ThermalMonitor", "ThermalZone", "run_program", "system_info"]

CPUFREQ = "sys/devices/system/cpu/cpu0/cpufreq"
THERMAL = "sys/devices/virtual/thermal"
PI_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
COMMAND_TIMEOUT_S = 3.0
"""How long ``nvpmodel -q`` may take before it counts as failed (it answers in well under a second)."""

THROTTLING_TRIPS = ("passive", "hot")
"""Trip point types at which the kernel (passive) or firmware (hot) starts cutting clocks; ``active``
trips only start fans, ``critical`` ones shut the device down."""

# Raspberry Pi firmware get_throttled bits that describe the present moment (the 0x10000+ bits are
# sticky "has occurred since boot" flags, which may predate the run).
PI_BITS = {
    0x1: "under-voltage",
    0x2: "ARM frequency capped",
    0x4: "currently throttled",
    0x8: "soft temperature limit active",
}
PI_PRESENT_BITS = 0xF
PI_THROTTLING_BITS = 0x2 | 0x4

CommandRunner = Callable[[Sequence[str]], str | None]
"""Runs argv and returns its stdout, or None when the command is missing, fails or times out."""


@dataclass(frozen=True)
class SystemInfo:
    """A snapshot of the clock, power and thermal state, taken before a benchmark."""

    governor: str | None = None
    """cpu0's cpufreq scaling governor (``performance``, ``ondemand``, ``schedutil``...)."""
    cpu_mhz: float | None = None
    cpu_max_mhz: float | None = None
    nvpmodel: str | None = None
    """Jetson power mode name from ``nvpmodel -q`` (``MAXN``, ``15W``...)."""
    temperatures_c: dict[str, float] = field(default_factory=dict)
    """Thermal zone type -> degrees Celsius, for each zone that could be read."""
    throttled: str | None = None
    """Raspberry Pi firmware ``get_throttled`` value as hex (``0x50005``), where the file exists."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def system_info(kind: str, root: str | Path = "/", run_command: CommandRunner | None = None) -> SystemInfo:
    """Read the system facts for a device of profile ``kind``; ``nvpmodel -q`` is asked only on a Jetson."""
    if kind not in KINDS:
        raise ValueError(f"unknown device kind {kind!r}; known: {', '.join(KINDS)}")
    base = Path(root)
    runner = run_program if run_command is None else run_command
    pi = read_pi_throttled(base)
    return SystemInfo(
        governor=_governor(base),
        cpu_mhz=_khz_to_mhz(_read(base / CPUFREQ / "scaling_cur_freq")),
        cpu_max_mhz=_khz_to_mhz(_read(base / CPUFREQ / "cpuinfo_max_freq")),
        nvpmodel=_nvpmodel(runner) if kind == "jetson" else None,
        temperatures_c=read_temperatures(find_zones(base)),
        throttled=None if pi is None else f"0x{pi:x}",
    )


def run_program(argv: Sequence[str]) -> str | None:
    """Run ``argv`` if its program is on PATH; its stdout, or None if missing, failing or slower than
    ``COMMAND_TIMEOUT_S`` (read at each call, so tests can shorten it)."""
    program = shutil.which(argv[0]) if argv else None
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, *argv[1:]],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_nvpmodel(output: str | None) -> str | None:
    """The power mode name from ``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the mode number)."""
    match = re.search(r"^\s*NV Power Mode\s*:\s*(\S.*?)\s*$", output or "", flags=re.MULTILINE)
    return match.group(1) if match else None


def _nvpmodel(runner: CommandRunner) -> str | None:
    try:
        return parse_nvpmodel(runner(["nvpmodel", "-q"]))
    except Exception:  # an injected or future runner failing must not stop a benchmark
        return None


def _read(path: Path) -> str | None:
    """A small sysfs file's text, stripped; None if it cannot be read or is empty."""
    try:
        text = path.read_text(errors="replace").strip()
    except (OSError, ValueError):
        return None
    return text or None


def _number(text: str | None) -> float | None:
    """A finite decimal number, or None for anything else."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _khz_to_mhz(text: str | None) -> float | None:
    khz = _number(text)
    return khz / 1000 if khz is not None and khz > 0 else None


def _governor(root: Path) -> str | None:
    text = _read(root / CPUFREQ / "scaling_governor")
    return text if text is not None and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text) else None


def read_pi_throttled(root: Path) -> int | None:
    """The Pi firmware's throttling bit mask (the file holds hex, with or without 0x), or None."""
    text = _read(root / PI_THROTTLED)
    if text is None or not re.fullmatch(r"(0[xX])?[0-9a-fA-F]{1,16}", text):
        return None
    return int(text, 16)


def describe_pi_bits(mask: int) -> str:
    """``currently throttled (0x4), under-voltage (0x1)``: the present-state bits set in ``mask``."""
    names = [f"{name} (0x{bit:x})" for bit, name in sorted(PI_BITS.items(), reverse=True) if mask & bit]
    return ", ".join(names) or "no present-state bits"


@dataclass(frozen=True)
class ThermalZone:
    """One ``thermal_zoneN`` folder: its label, its temperature file and its throttling trip points."""

    label: str
    temp_path: Path
    trips: tuple[tuple[str, float], ...]
    """(type, degrees C) of the passive / hot trip points, lowest first."""

    def read_c(self) -> float | None:
        """The zone's temperature now, in degrees C (sysfs gives millidegrees); None if unreadable."""
        millidegrees = _number(_read(self.temp_path))
        return None if millidegrees is None else millidegrees / 1000

    def trip_reached(self, celsius: float) -> tuple[str, float] | None:
        """The highest throttling trip point at or below ``celsius``, if any."""
        reached = [trip for trip in self.trips if celsius >= trip[1]]
        return reached[-1] if reached else None


def find_zones(root: Path) -> list[ThermalZone]:
    """The thermal zones under ``root``, in zone order; duplicate type names get the folder name appended."""
    folders = _zone_folders(root / THERMAL)
    zones: list[ThermalZone] = []
    seen: set[str] = set()
    for folder in folders:
        label = _read(folder / "type") or folder.name
        if label in seen:
            label = f"{label} ({folder.name})"
        seen.add(label)
        zones.append(ThermalZone(label, folder / "temp", _trips(folder)))
    return zones


def _zone_folders(thermal: Path) -> list[Path]:
    try:
        found = [p for p in thermal.iterdir() if re.fullmatch(r"thermal_zone\d+", p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(p.name.removeprefix("thermal_zone")))


def _trips(folder: Path) -> tuple[tuple[str, float], ...]:
    """Passive / hot trip points above 0 C (disabled trips read 0 or below, e.g. -274000)."""
    trips: list[tuple[str, float]] = []
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return ()
    for name in names:
        match = re.fullmatch(r"trip_point_(\d+)_type", name)
        if match is None:
            continue
        kind = (_read(folder / name) or "").lower()
        millidegrees = _number(_read(folder / f"trip_point_{match.group(1)}_temp"))
        if kind in THROTTLING_TRIPS and millidegrees is not None and millidegrees > 0:
            trips.append((kind, millidegrees / 1000))
    return tuple(sorted(trips, key=lambda trip: trip[1]))


def read_temperatures(zones: Sequence[ThermalZone]) -> dict[str, float]:
    """Zone label -> degrees C for each zone whose temperature reads as a number."""
    temperatures = {}
    for zone in zones:
        celsius = zone.read_c()
        if celsius is not None:
            temperatures[zone.label] = celsius
    return temperatures


class ThermalMonitor:
    """Samples temperatures, Pi throttling bits and the CPU clock in a daemon thread during a benchmark.

    Used as ``with ThermalMonitor(root) as monitor: run()``; it samples on entry, every ``interval_s``
    and on exit, so even a run shorter than the interval is seen twice. Afterwards
    ``max_temperatures_c``, ``throttled`` and ``reasons`` say what happened. ``sample_once`` drives it
    by hand (tests). Throttling is seen when a zone reaches one of its passive / hot trip points, or
    the Pi firmware reports ARM frequency capping (0x2) or throttling (0x4).
    """

    def __init__(self, root: str | Path = "/", interval_s: float = 0.5) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.root = Path(root)
        self.interval_s = interval_s
        self.zones = find_zones(self.root)
        self.max_temperatures_c: dict[str, float] = {}
        self.min_cpu_mhz: float | None = None
        self.max_cpu_mhz: float | None = None
        self.samples = 0
        self._trips_reached: dict[str, tuple[str, float]] = {}
        self._pi_bits = 0
        self._pi_values: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def throttled(self) -> bool:
        """A trip point was reached or the Pi firmware capped/throttled the CPU while monitoring."""
        return bool(self._trips_reached) or bool(self._pi_bits & PI_THROTTLING_BITS)

    @property
    def reasons(self) -> list[str]:
        """One line per cause: ``cpu-thermal reached 86.0 C (passive trip 85.0 C)``, or the Pi bits."""
        with self._lock:
            lines = [
                f"{label} reached {self.max_temperatures_c[label]:.1f} C ({kind} trip {trip_c:.1f} C)"
                for label, (kind, trip_c) in self._trips_reached.items()
            ]
            if self._pi_bits & PI_THROTTLING_BITS:
                values = ", ".join(f"0x{v:x}" for v in dict.fromkeys(self._pi_values))
                lines.append(f"Raspberry Pi firmware: {describe_pi_bits(self._pi_bits)} (get_throttled {values})")
            return lines

    def sample_once(self) -> None:
        """Read every source once and fold it into the maxima and throttling state."""
        temperatures = read_temperatures(self.zones)
        pi = read_pi_throttled(self.root)
        mhz = _khz_to_mhz(_read(self.root / CPUFREQ / "scaling_cur_freq"))
        with self._lock:
            self.samples += 1
            for zone in self.zones:
                self._record_zone(zone, temperatures.get(zone.label))
            if pi is not None and pi & PI_THROTTLING_BITS:
                self._pi_bits |= pi & PI_PRESENT_BITS
                self._pi_values.append(pi)
            if mhz is not None:
                self.min_cpu_mhz = mhz if self.min_cpu_mhz is None else min(self.min_cpu_mhz, mhz)
                self.max_cpu_mhz = mhz if self.max_cpu_mhz is None else max(self.max_cpu_mhz, mhz)

    def _record_zone(self, zone: ThermalZone, celsius: float | None) -> None:
        if celsius is None:
            return
        self.max_temperatures_c[zone.label] = max(celsius, self.max_temperatures_c.get(zone.label, celsius))
        trip = zone.trip_reached(celsius)
        previous = self._trips_reached.get(zone.label)
        if trip is not None and (previous is None or trip[1] > previous[1]):
            self._trips_reached[zone.label] = trip

    def start(self) -> None:
        """Take a first sample and start the sampling thread."""
        if self._thread is not None:
            raise RuntimeError("ThermalMonitor is already running")
        self.sample_once()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="edgerun-thermal-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the thread, then take a last sample."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self.sample_once()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()

    def __enter__(self) -> ThermalMonitor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
