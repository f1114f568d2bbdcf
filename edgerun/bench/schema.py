"""The bench result file format, ``edgerun.bench/2``: its version constant and a checked loader.

``edgerun bench --json`` writes one run (``"kind": "run"``) or a sweep (``"kind": "sweep"``, its
runs under ``"runs"``). Readers (``edgerun report``, the plots) load files here so that a file
from another edgerun, a truncated file or a stray JSON file fails with one line that names the
file and what was expected, instead of a ``KeyError`` deep in a table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgerun.errors import ResultFileError

SCHEMA = "edgerun.bench/2"
"""The version written in every result file (and every run of a sweep) this edgerun reads and writes."""

KINDS = ("run", "sweep")

REQUIRED_RUN_KEYS = (
    "model",
    "backend",
    "precision",
    "threads",
    "device",
    "scenario",
    "batch",
    "queries",
    "samples",
    "interrupted",
    "latency_ms",
    "latency_samples_ms",
    "throughput_per_s",
    "qps",
    "score",
    "deadline_ms",
    "meets_deadline",
    "deadline_rule",
    "warnings",
)
"""What a run must hold for the readers: the figures compared and the facts that label them."""

REQUIRED_NESTED_KEYS = {
    "device": ("kind", "model"),
    "latency_ms": ("min", "p50", "p90", "p99", "max"),
    "score": ("metric", "value", "higher_is_better"),
}

OPTIONAL_RUN_KEYS = ("stream", "sweep_point")
"""Keys a run may hold that readers do not require: adding one keeps the schema version (a reader
of this version ignores it), while renaming or removing a required key needs a new version.
``stream``: a stateful model's run as streams (state carried, per-chunk latency), else null."""

_WRITTEN_BY = f"a result file written by `edgerun bench --json` (schema {SCHEMA!r})"


def load_result_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The runs in one result file: ``[run]`` for a run file, the sweep's runs (in order) for a sweep file.

    Raises `ResultFileError` naming the file and what was expected when it is missing, not
    JSON, from another schema version, of an unknown kind, or has a run without the keys
    the readers need.
    """
    file = Path(path)
    if not file.exists():
        raise ResultFileError(file, f"result file not found (expected {_WRITTEN_BY})")
    if file.is_dir():
        raise ResultFileError(file, f"is a directory, not a result file (expected {_WRITTEN_BY})")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResultFileError(file, f"not JSON: not UTF-8 text (expected {_WRITTEN_BY})") from None
    except OSError as exc:
        raise ResultFileError(file, f"cannot be read: {exc.strerror or exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(
            file, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; expected {_WRITTEN_BY})"
        ) from None
    if not isinstance(document, dict):
        raise ResultFileError(file, f"a JSON {_json_type(document)}, not an object (expected {_WRITTEN_BY})")
    check_schema(file, document)
    kind = document.get("kind")
    if kind == "run":
        check_run(file, document)
        return [document]
    if kind == "sweep":
        return _sweep_runs(file, document)
    raise ResultFileError(file, f"kind {kind!r}, expected one of {', '.join(map(repr, KINDS))} (schema {SCHEMA!r})")


def check_schema(file: str | os.PathLike[str], document: dict[str, Any], where: str = "") -> None:
    """The document says it is schema `SCHEMA`; otherwise say which version it is and which is read."""
    if "schema" not in document:
        raise ResultFileError(
            file,
            f'{where}edgerun bench output before schema 2 (no "schema" key); this edgerun reads {SCHEMA!r}: '
            "re-run `edgerun bench --json` with this version",
        )
    found = document["schema"]
    if found != SCHEMA:
        raise ResultFileError(
            file, f"{where}schema {found!r}, but this edgerun reads {SCHEMA!r} only: re-run the bench with this version"
        )


def check_run(file: str | os.PathLike[str], run: dict[str, Any], where: str = "") -> None:
    """The run holds every key in `REQUIRED_RUN_KEYS` (and the nested ones readers use)."""
    missing = [key for key in REQUIRED_RUN_KEYS if key not in run]
    for key, inner in REQUIRED_NESTED_KEYS.items():
        value = run.get(key)
        if key in missing:
            continue
        if not isinstance(value, dict):
            raise ResultFileError(file, f"{where}{key!r} is a JSON {_json_type(value)}, expected an object")
        missing += [f"{key}.{name}" for name in inner if name not in value]
    if missing:
        raise ResultFileError(
            file, f"{where}a run without {', '.join(missing)} (expected every key of a schema {SCHEMA!r} run)"
        )
    if not isinstance(run["latency_samples_ms"], list):
        raise ResultFileError(
            file, f"{where}'latency_samples_ms' is a JSON {_json_type(run['latency_samples_ms'])}, expected a list"
        )


def _sweep_runs(file: Path, document: dict[str, Any]) -> list[dict[str, Any]]:
    runs = document.get("runs")
    if not isinstance(runs, list) or not runs:
        got = "no runs" if runs in (None, []) else f"'runs' as a JSON {_json_type(runs)}"
        raise ResultFileError(file, f"a sweep with {got} (expected a non-empty list of runs)")
    for index, run in enumerate(runs):
        where = f"run {index} of the sweep: "
        if not isinstance(run, dict):
            raise ResultFileError(file, f"{where}a JSON {_json_type(run)}, expected an object")
        if "schema" in run:
            check_schema(file, run, where)
        check_run(file, run, where)
    return runs


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
