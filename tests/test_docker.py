"""The deployment files in docker/: properties every image must keep, checked without Docker.

hadolint (in .ci/run) checks Dockerfile style; these tests check edgerun's own rules: pinned bases and
packages, multi-stage builds through the one install recipe, a numeric non-root user, the cache volume, the
entrypoint, a one-shot-inference health check, version labels that match pyproject.toml and the pins, build
contexts that keep what COPY needs, and the arm64 check reading the Pi image's own settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import edgerun

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
TARGETS = ("jetson", "gpu", "rpi")
CACHE = "/var/cache/edgerun"


def instructions(target: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = (DOCKER / f"{target}.Dockerfile").read_text().splitlines()
    out: list[tuple[str, str]] = []
    buffer = ""
    for line in lines:
        if line.lstrip().startswith("#") and not buffer:
            continue
        if line.lstrip().startswith("#"):
            continue
        buffer += line.rstrip()
        if buffer.endswith("\\"):
            buffer = buffer[:-1] + " "
            continue
        if buffer.strip():
            word, _, rest = buffer.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
        buffer = ""
    return out


def stages(target: str) -> list[list[tuple[str, str]]]:
    """Instructions per build stage; stage 0 holds the global ARGs before the first FROM."""
    result: list[list[tuple[str, str]]] = [[]]
    for instruction in instructions(target):
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def arg_defaults(target: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for word, rest in instructions(target):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found.setdefault(name, value.strip('"'))
    return found


def final_stage(target: str) -> list[tuple[str, str]]:
    return stages(target)[-1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def constraints() -> list[Requirement]:
    reqs = []
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


@pytest.mark.parametrize("target", TARGETS)
def test_multi_stage_from_pinned_bases(target: str) -> None:
    froms = [rest for word, rest in instructions(target) if word == "FROM"]
    assert len(froms) >= 2, f"{target}: not multi-stage"
    defaults = arg_defaults(target)
    stage_names = {rest.split(" AS ")[-1] for rest in froms if " AS " in rest}
    for line in froms:
        image = line.split(" AS ")[0].strip()
        for name, value in defaults.items():
            image = image.replace("${" + name + "}", value)
        if image in stage_names:  # an earlier stage, chosen by a build argument: base-jp${JETPACK} -> base-jp6
            continue
        assert ":" in image.rsplit("/", 1)[-1], f"{target}: base {image} has no tag"
        assert not image.endswith(":latest"), f"{target}: base {image} is not pinned"


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_stage_user_entrypoint_volume_healthcheck(target: str) -> None:
    final = final_stage(target)
    words = [word for word, _ in final]
    users = [rest for word, rest in final if word == "USER"]
    assert users, f"{target}: no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"{target}: USER {users[-1]} is not numeric"
    assert gid.isdigit(), f"{target}: USER {users[-1]} has no numeric group"
    assert int(uid) >= 1000, f"{target}: USER {users[-1]} is a system or root id"
    assert any(f"--uid {uid}" in rest for word, rest in final if word == "RUN"), "the user is not created with that uid"
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY")), "RUN/COPY after USER"

    assert [rest for word, rest in final if word == "ENTRYPOINT"] == ['["edgerun"]']
    assert any(word == "VOLUME" and json.loads(rest) == [CACHE] for word, rest in final)
    assert any(word == "ENV" and f"EDGERUN_CACHE_DIR={CACHE}" in rest for word, rest in final)
    assert any(word == "RUN" and f"chown edgerun:edgerun {CACHE}" in rest for word, rest in final)

    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1
    options, _, command = health[0].partition(" CMD ")
    assert "--timeout=" in options
    assert "--start-period=" in options
    argv = json.loads(command)
    assert argv[:3] == ["edgerun", "run", "digits-student"], "the health check is not a one-shot inference"
    assert argv[3:] == ["-i", "/opt/edgerun/health-input.npy"]


def test_health_check_input_is_written_by_the_install_recipe() -> None:
    script = (DOCKER / "install.sh").read_text()
    assert '"$home/health-input.npy"' in script
    assert "np.zeros((1, 1, 8, 8), dtype=np.float32)" in script
    card = edgerun.models.card("digits-student")
    assert next(iter(card.input_shapes.values()))[1:] == [1, 8, 8]


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_uses_the_shared_install_recipe(target: str) -> None:
    runs = [rest for word, rest in instructions(target) if word == "RUN"]
    installs = [run for run in runs if "sh /src/docker/install.sh /src" in run]
    assert len(installs) == 1, f"{target}: docker/install.sh is not used exactly once"
    copies = [rest for word, rest in instructions(target) if word == "COPY"]
    assert "docker/install.sh docker/constraints.txt /src/docker/" in copies
    assert any(c.startswith("--from=build /opt/edgerun /opt/edgerun") for c in copies)
    if target != "rpi":  # GPU images see the base image's TensorRT and insist on it
        assert "EDGERUN_SYSTEM_SITE=1 EDGERUN_REQUIRE_TENSORRT=1" in installs[0]


@pytest.mark.parametrize("target", TARGETS)
def test_apt_packages_are_pinned(target: str) -> None:
    for word, rest in instructions(target):
        if word != "RUN" or "apt-get install" not in rest:
            continue
        packages = rest.split("apt-get install", 1)[1].split("&&")[0].split()
        packages = [p for p in packages if not p.startswith("-")]
        assert packages, rest
        for package in packages:
            assert re.fullmatch(r"[a-z0-9.+-]+=\$\{\w+\}|[a-z0-9.+-]+=[\w.+~:-]+", package), f"{target}: {package}"


@pytest.mark.parametrize("target", TARGETS)
def test_labels_carry_versions(target: str) -> None:
    labels = " ".join(rest for word, rest in final_stage(target) if word == "LABEL")
    assert 'org.opencontainers.image.version="${EDGERUN_VERSION}"' in labels
    assert "io.edgerun.tensorrt.version=" in labels
    assert arg_defaults(target)["EDGERUN_VERSION"] == pyproject()["project"]["version"]


def test_constraints_pin_every_dependency_exactly() -> None:
    pins = constraints()
    for req in pins:
        assert [spec.operator for spec in req.specifier] == ["=="], str(req)
    pinned = {req.name.lower().replace("_", "-") for req in pins}
    for dep in pyproject()["project"]["dependencies"]:
        assert Requirement(dep).name.lower() in pinned, f"{dep} is not pinned in docker/constraints.txt"
    for dep in pyproject()["build-system"]["requires"]:
        assert Requirement(dep).name.lower() in pinned, f"build requirement {dep} is not pinned"


def test_constraint_pins_satisfy_pyproject() -> None:
    wanted = {Requirement(d).name.lower(): Requirement(d) for d in pyproject()["project"]["dependencies"]}
    for pin in constraints():
        name = pin.name.lower()
        if name in wanted:
            version = next(iter(pin.specifier)).version
            assert wanted[name].specifier.contains(version), f"{pin} breaks pyproject's {wanted[name]}"


def test_rpi_label_matches_the_onnxruntime_pin() -> None:
    env = {"python_version": "3.11", "python_full_version": "3.11.2"}  # Debian bookworm's Python
    pins = [r for r in constraints() if r.name == "onnxruntime" and (r.marker is None or r.marker.evaluate(env))]
    assert len(pins) == 1
    assert arg_defaults("rpi")["ONNXRUNTIME_VERSION"] == next(iter(pins[0].specifier)).version


@pytest.mark.parametrize("target", TARGETS)
def test_a_stage_using_a_global_arg_declares_it(target: str) -> None:
    """A global ARG (before the first FROM) is empty inside a stage unless that stage names it again."""
    global_args = {rest.partition("=")[0] for word, rest in stages(target)[0] if word == "ARG"}
    for index, stage in enumerate(stages(target)[1:], start=1):
        declared = {rest.partition("=")[0] for word, rest in stage if word == "ARG"}
        for word, rest in stage:
            if word in ("FROM", "ARG"):
                continue
            used = {name for name in global_args if f"${{{name}}}" in rest or re.search(rf"\${name}\b", rest)}
            assert used <= declared, f"{target} stage {index}: {word} uses {sorted(used - declared)} without an ARG"


def test_rpi_python_pin_is_one_value() -> None:
    values = {rest for word, rest in instructions("rpi") if word == "ARG" and rest.startswith("PYTHON3_DEB=")}
    assert len(values) == 1, f"build and runtime stages pin different python3 versions: {values}"


@pytest.mark.parametrize("target", TARGETS)
def test_build_context_keeps_what_copy_needs(target: str) -> None:
    ignore = (DOCKER / f"{target}.Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "the context is not an allow-list"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for word, rest in instructions(target):
        if word != "COPY" or rest.startswith("--from="):
            continue
        for source in rest.split()[:-1]:
            assert source in allowed, f"{target}: COPY {source} is excluded from the build context"
            assert (ROOT / source).exists(), source


@pytest.mark.parametrize("target", TARGETS)
def test_every_hadolint_ignore_has_a_written_reason(target: str) -> None:
    lines = (DOCKER / f"{target}.Dockerfile").read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"#\s*hadolint ignore=([\w,]+)", line)
        if match:
            reason = lines[i - 1]
            for rule in match.group(1).split(","):
                assert reason.startswith("#"), f"{target}:{i + 1}: no comment above the ignore"
                assert f"{rule} ignored:" in reason, f"{target}:{i + 1}: {rule} has no written reason"
    config = ROOT / ".hadolint.yaml"
    assert not config.exists() or "ignored" not in config.read_text(), "global ignores are not allowed"


def test_arm64_check_installs_as_the_pi_image_does() -> None:
    script = (DOCKER / "arm64-check.sh").read_text()
    assert "sed -n 's/^ARG PYTHON3_DEB=//p' \"$repo/docker/rpi.Dockerfile\"" in script
    assert "python3=$python3_deb python3-venv=$python3_deb" in script
    packages = {p.split("=")[0] for _, rest in instructions("rpi") if "apt-get install" in rest for p in rest.split()}
    assert {"python3", "python3-venv"} <= packages
    assert "sh /opt/edgerun-src/docker/install.sh /opt/edgerun-src" in script
    assert "--uid $app_uid" in script
    assert "app_uid=10001" in script
    assert "HEALTHCHECK .*?CMD (\\[.*?\\])$" in script
    assert "docker/rpi.Dockerfile" in script
    models = re.search(r"^models=\((.*)\)$", script, re.M)
    assert models is not None
    assert set(models.group(1).split()) == set(edgerun.models.names())
    assert "for precision in fp32 int8" in script
    assert "python -m pytest" in script


def _summary_module():
    spec = importlib.util.spec_from_file_location("arm64_summary", DOCKER / "arm64_summary.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["arm64_summary"] = module
    spec.loader.exec_module(module)
    return module


def test_arm64_summary_reports_what_the_logs_say(tmp_path: Path) -> None:
    summary = _summary_module()
    (tmp_path / "steps.tsv").write_text("edgerun info\t0\t1500\tinfo.log\npython -m pytest\t1\t60000\tpytest.log\n")
    (tmp_path / "platform.txt").write_text("aarch64\nPython 3.11.2\nonnxruntime==1.32.0\nnumpy==2.4.6\n")
    (tmp_path / "pytest.log").write_text("...\n3 passed, 1 failed, 1 skipped in 60.00s\n")
    (tmp_path / "pytest-arm64.xml").write_text(
        '<testsuites><testsuite tests="7" failures="1" errors="0" skipped="3" time="60.0">'
        '<testcase classname="tests.test_a" name="test_x"><failure message="boom"/></testcase>'
        '<testcase classname="tests.test_a" name="test_s1"><skipped message="slow: run with -m slow"/></testcase>'
        '<testcase classname="tests.test_b" name="test_g1"><skipped message="no NVIDIA GPU"/></testcase>'
        '<testcase classname="tests.test_b" name="test_g2"><skipped message="no NVIDIA GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    (tmp_path / "bench-digits-student-int8.json").write_text(
        json.dumps(
            {
                "backend": "onnxruntime",
                "precision": "int8",
                "queries": 20,
                "latency_ms": {"p50": 1.5, "p99": 2.25},
                "meets_deadline": True,
                "deadline_ms": 100.0,
                "plan": {"targets": ["CPUExecutionProvider"]},
            }
        )
    )
    finished = 1_790_000_000  # 2026-09-21 14:13:20 UTC: the date is the logs', not the rendering's
    for path in tmp_path.iterdir():
        os.utime(path, (finished - 60, finished - 60))
    os.utime(tmp_path / "pytest.log", (finished, finished))
    text = summary.render(tmp_path, "HEAD abc1234", 20, "")
    assert "run finished 2026-09-21 14:13 UTC" in text
    assert "1 step(s) failed" in text
    assert "| `python -m pytest` | 1 (FAILED) | 60.0 |" in text
    assert "**3 passed, 1 failed, 3 skipped** of 7" in text
    assert "- `tests.test_a::test_x`" in text
    skipped = text.split("Skipped, by reason (pytest's words):\n", 1)[1].splitlines()
    assert skipped[:2] == ["- 2 x no NVIDIA GPU", "- 1 x slow: run with -m slow"]
    assert "| digits-student | int8 | onnxruntime (CPUExecutionProvider) | 20 | 1.50 | 2.25 | PASS (100.0 ms) |" in text
    assert "| ppocr-cls | fp32 | no result" in text
    assert "`uname -m` aarch64" in text
    assert "onnxruntime 1.32.0" in text
    assert "says nothing about a Raspberry Pi's speed" in text


def test_committed_arm64_summary_is_from_aarch64() -> None:
    text = (DOCKER / "arm64-check-summary.md").read_text()
    assert "`uname -m` aarch64" in text
    assert "under QEMU emulation" in text
    # the acceptance: the committed run shows edgerun's bench and tests passing on aarch64
    assert "Result: **all steps passed**" in text
    assert " passed, 0 failed, " in text


def test_jetpack_7_tensorrt_agrees_between_dockerfile_and_docs() -> None:
    """JetPack 7.0 / 7.1 ship TensorRT 10.13 and 7.2 TensorRT 10.16, never 11: label, README and docker/README agree."""
    args = arg_defaults("jetson")
    assert args["JP7_IMAGE"] == "nvcr.io/nvidia/tensorrt:25.08-py3"
    assert args["JP7_TENSORRT"] == "10.13", "the 25.08 TensorRT container, like JetPack 7.0 / 7.1, has TensorRT 10.13"
    readme = " ".join((ROOT / "README.md").read_text().split())
    docker_readme = " ".join((DOCKER / "README.md").read_text().split())
    assert "JetPack 7 brings TensorRT 11" not in readme
    assert "JetPack 7 does not bring TensorRT 11" in readme
    for text in (readme, docker_readme):
        assert "TensorRT 10.13" in text
        assert "TensorRT 10.16" in text
    assert "e.g. 11.x" not in docker_readme


def test_jetpack_6_cuda_python_can_be_replaced_by_a_jetpack_build() -> None:
    """PyPI's aarch64 cuda-python targets the SBSA stack, not L4T r36: the JetPack 6 pin is a build argument."""
    args = arg_defaults("jetson")
    assert args["JP6_CUDA_PYTHON"] == "cuda-python==12.6.2.post1"
    jp6 = next(stage for stage in stages("jetson") if any(w == "FROM" and "AS base-jp6" in r for w, r in stage))
    assert any(w == "ENV" and 'EDGERUN_CUDA_PYTHON="${JP6_CUDA_PYTHON}"' in r for w, r in jp6)
