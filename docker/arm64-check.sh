#!/usr/bin/env bash
# The Raspberry Pi path, executed on arm64 under QEMU user-mode emulation (no Pi, no image registry needed).
#
#   sudo docker/arm64-check.sh
#
# 1. Builds an arm64 Debian bookworm root with debootstrap + qemu-user-static (about 8 minutes on 2 cores);
#    kept between runs: an existing root is reused (delete the folder to rebuild it).
# 2. Installs edgerun in it the way rpi.Dockerfile does: the same pinned Debian packages (read from
#    rpi.Dockerfile's ARG PYTHON3_DEB), the same user (uid 10001), the same docker/install.sh and constraints.
# 3. As that non-root user, with the image's cache folder: `edgerun --version`, `edgerun info`, the image's
#    HEALTHCHECK command (read from rpi.Dockerfile), `edgerun bench` on every bundled model at FP32 and INT8.
# 4. Installs the test tools (`.[test]`) and runs the CPU test suite (`python -m pytest`) in the root.
# 5. Writes the Markdown summary (docker/arm64-check-summary.md) and keeps every log.
# Every step runs even when an earlier one failed; the exit status is 1 when any step failed.
#
# Settings (environment):
#   EDGERUN_ARM64_ROOT=/var/cache/edgerun-arm64/bookworm   the root (reused when it exists and is complete)
#   EDGERUN_ARM64_LOGS=/var/cache/edgerun-arm64/logs/<UTC time>   logs, bench JSON, JUnit XML
#   EDGERUN_ARM64_SUMMARY=docker/arm64-check-summary.md
#   EDGERUN_ARM64_SOURCE=worktree|head   what to install and test: this checkout's files (tracked and untracked,
#                                        not ignored), or the committed HEAD with this checkout's docker/ on top
#   EDGERUN_ARM64_BENCH_ITERATIONS=20    timed queries per bench run (emulation is 10-50x slower than native)
#   EDGERUN_ARM64_PYTEST_ARGS=""         extra pytest arguments (e.g. a subset: "tests/test_models.py -k int8")
#   EDGERUN_ARM64_STEPS="info bench tests"   which of the optional parts to run
#   EDGERUN_ARM64_QEMU_CPU=cortex-a72    the CPU QEMU emulates (QEMU_CPU): the Raspberry Pi 4B's core by default
#   DEBIAN_MIRROR=http://deb.debian.org/debian   DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
# /proc/cpuinfo in the root is replaced by a description of that emulated CPU (one entry per host core): under
# QEMU user mode the root would read the x86 host's, on which onnxruntime's CPU detection crashes (SIGSEGV).
# pip inside the root uses the host's CA bundle ($PIP_CERT, pip's `global.cert`, or the system bundle) and the
# host's index URL when it is an http(s) one, so it also works where the network intercepts TLS.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${EDGERUN_ARM64_ROOT:-/var/cache/edgerun-arm64/bookworm}
logs=${EDGERUN_ARM64_LOGS:-/var/cache/edgerun-arm64/logs/$(date -u +%Y%m%dT%H%M%SZ)}
summary=${EDGERUN_ARM64_SUMMARY:-$repo/docker/arm64-check-summary.md}
source_mode=${EDGERUN_ARM64_SOURCE:-worktree}
iterations=${EDGERUN_ARM64_BENCH_ITERATIONS:-20}
pytest_args=${EDGERUN_ARM64_PYTEST_ARGS:-}
steps_wanted=${EDGERUN_ARM64_STEPS:-info bench tests}
qemu_cpu=${EDGERUN_ARM64_QEMU_CPU:-cortex-a72}
export QEMU_CPU=$qemu_cpu
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
models=(ppocr-cls ppocr-det digits-teacher digits-student silero-vad)
app_uid=10001

die() { echo "arm64-check: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
for tool in debootstrap chroot git python3 mount; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap qemu-user-static binfmt-support)"
done
case $source_mode in worktree | head) ;; *) die "EDGERUN_ARM64_SOURCE must be worktree or head" ;; esac
mkdir -p "$logs" || die "cannot create $logs"
steps_tsv=$logs/steps.tsv
: >"$steps_tsv"

# step NAME LOGFILE TIMEOUT_S CMD...: runs CMD, records name, exit status, milliseconds and log in steps.tsv.
step() {
    local name=$1 log=$2 limit=$3 start rc
    shift 3
    echo "== $name" | tee -a "$logs/run.log"
    start=$(date +%s%N)
    timeout --kill-after=30 "$limit" "$@" >"$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((($(date +%s%N) - start) / 1000000))" "$(basename "$log")" >>"$steps_tsv"
    echo "   exit $rc ($(tail -n 1 "$log" | cut -c1-160))" | tee -a "$logs/run.log"
    return "$rc"
}

# --- QEMU: aarch64 binaries must run through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    command -v update-binfmts >/dev/null || die "binfmt-support is missing"
    update-binfmts --enable qemu-aarch64 || die "qemu-aarch64 binfmt not registered (apt-get install qemu-user-static)"
fi

# --- 1. The root, reused when complete.
if [ -f "$root/.edgerun-root-complete" ]; then
    echo "== root: reusing $root" | tee -a "$logs/run.log"
    printf 'debootstrap (cached root reused)\t0\t0\t-\n' >>"$steps_tsv"
else
    rm -rf "$root"
    mkdir -p "$(dirname "$root")"
    step "debootstrap bookworm arm64 (minbase + passwd, as debian:bookworm-slim)" "$logs/debootstrap.log" 3600 \
        debootstrap --arch=arm64 --variant=minbase --include=passwd bookworm "$root" "$mirror" || die "debootstrap failed: $logs/debootstrap.log"
    # The same suites as the debian:bookworm-slim image.
    cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security_mirror bookworm-security main
EOF
    touch "$root/.edgerun-root-complete"
fi

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null; done
}
trap cleanup EXIT
for fs in proc sys dev; do
    mountpoint -q "$root/$fs" && continue
    case $fs in
        proc) mount -t proc proc "$root/proc" ;;
        sys) mount -t sysfs sysfs "$root/sys" ;;
        dev) mount --bind /dev "$root/dev" ;;
    esac && mounted+=("$root/$fs")
done
# A private /dev/shm, as a container has (the bind of /dev above does not carry the host's /dev/shm mount).
if ! mountpoint -q "$root/dev/shm"; then
    mount -t tmpfs -o mode=1777,size=256m tmpfs "$root/dev/shm" && mounted+=("$root/dev/shm")
fi
# The emulated CPU's /proc/cpuinfo (Arm's MIDR fields; cortex-a72: part 0xd08 and a Pi 4B's feature list).
case $qemu_cpu in
    cortex-a72) part=0xd08 features="fp asimd evtstrm crc32 cpuid" ;;
    cortex-a53) part=0xd03 features="fp asimd evtstrm crc32 cpuid" ;;
    cortex-a57) part=0xd07 features="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid" ;;
    *) die "EDGERUN_ARM64_QEMU_CPU: no /proc/cpuinfo description for $qemu_cpu (cortex-a72, cortex-a53, cortex-a57)" ;;
esac
for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
    printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
done >"$logs/cpuinfo"
mount --bind "$logs/cpuinfo" "$root/proc/cpuinfo" && mounted+=("$root/proc/cpuinfo")
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# The host's CA bundle and package index, for pip in the root.
ca=${PIP_CERT:-$(pip config get global.cert 2>/dev/null || true)}
[ -f "$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
index=${PIP_INDEX_URL:-$(pip config get global.index-url 2>/dev/null || true)}
pip_env=(PIP_DEFAULT_TIMEOUT=180)
if [ -f "$ca" ]; then
    cp "$ca" "$root/etc/edgerun-host-ca.crt"
    pip_env+=(PIP_CERT=/etc/edgerun-host-ca.crt)
fi
case $index in http://* | https://*) pip_env+=("PIP_INDEX_URL=$index") ;; esac
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!var:-}" ] && pip_env+=("$var=${!var}")
done

# Command prefixes (arrays, so that `step` can run them under `timeout`): as root, and as the image's user.
base_env=(LANG=C.UTF-8 "QEMU_CPU=$qemu_cpu" PATH=/opt/edgerun/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin)
in_root=(chroot "$root" /usr/bin/env -i HOME=/root "${base_env[@]}" "${pip_env[@]}")
as_app=(chroot "--userspec=$app_uid:$app_uid" "$root" /usr/bin/env -i HOME=/home/edgerun
    "${base_env[@]}" "${pip_env[@]}" EDGERUN_CACHE_DIR=/var/cache/edgerun)

# --- 2. The source, then rpi.Dockerfile's install.
python3_deb=$(sed -n 's/^ARG PYTHON3_DEB=//p' "$repo/docker/rpi.Dockerfile" | head -n 1)
[ -n "$python3_deb" ] || die "no ARG PYTHON3_DEB=... in docker/rpi.Dockerfile"
src=$root/opt/edgerun-src
rm -rf "$src" "$root/opt/edgerun" "$root/var/cache/edgerun"
mkdir -p "$src"
# copy_checkout [PATHSPEC...]: this checkout's files (tracked and untracked, not ignored, not deleted) into $src.
copy_checkout() {
    git -C "$repo" ls-files -z --cached --others --exclude-standard -- "$@" |
        while IFS= read -r -d '' f; do [ -e "$repo/$f" ] && printf '%s\0' "$f"; done |
        tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
}
if [ "$source_mode" = head ]; then
    git -C "$repo" archive --format=tar HEAD | tar -C "$src" -xf -
    rm -rf "$src/docker"
    copy_checkout docker
    revision="HEAD $(git -C "$repo" rev-parse --short HEAD) with this checkout's docker/"
else
    copy_checkout
    revision="working tree on HEAD $(git -C "$repo" rev-parse --short HEAD)"
    [ -n "$(git -C "$repo" status --porcelain)" ] && revision="$revision (uncommitted changes)"
fi

step "apt-get install python3=$python3_deb python3-venv=$python3_deb (as rpi.Dockerfile)" "$logs/apt.log" 1800 \
    "${in_root[@]}" sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3=$python3_deb python3-venv=$python3_deb && rm -rf /var/lib/apt/lists/*"
step "install.sh (as rpi.Dockerfile's build stage)" "$logs/install.log" 3600 \
    "${in_root[@]}" sh /opt/edgerun-src/docker/install.sh /opt/edgerun-src
install_rc=$?
"${in_root[@]}" sh -c "getent group edgerun >/dev/null || groupadd --gid $app_uid edgerun; \
    getent passwd edgerun >/dev/null || useradd --no-log-init --uid $app_uid --gid edgerun --create-home \
    --home-dir /home/edgerun --shell /usr/sbin/nologin edgerun; \
    mkdir -p /var/cache/edgerun && chown edgerun:edgerun /var/cache/edgerun"
"${in_root[@]}" sh -c "uname -m; python3 --version; /opt/edgerun/venv/bin/python -m pip freeze" >"$logs/platform.txt" 2>&1

wants() { case " $steps_wanted " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "$install_rc" = 0 ] && wants info; then
    step "edgerun --version" "$logs/version.log" 600 "${as_app[@]}" edgerun --version
    step "edgerun info" "$logs/info.log" 600 "${as_app[@]}" edgerun info
    "${as_app[@]}" edgerun info --json >"$logs/info.json" 2>/dev/null
    # The image's HEALTHCHECK, read from rpi.Dockerfile (exec form: a JSON array).
    mapfile -t health < <(python3 -c 'import json, re, sys
text = open(sys.argv[1]).read()
print("\n".join(json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", text, re.M | re.S).group(1))))' \
        "$repo/docker/rpi.Dockerfile")
    step "HEALTHCHECK: ${health[*]}" "$logs/healthcheck.log" 600 "${as_app[@]}" "${health[@]}"
fi

if [ "$install_rc" = 0 ] && wants bench; then
    for model in "${models[@]}"; do
        for precision in fp32 int8; do
            step "edgerun bench $model --precision $precision -n $iterations --warmup 2" \
                "$logs/bench-$model-$precision.log" 3600 \
                "${as_app[@]}" edgerun bench "$model" --precision "$precision" -n "$iterations" --warmup 2 \
                --json "/tmp/bench-$model-$precision.json"
            cp "$root/tmp/bench-$model-$precision.json" "$logs/" 2>/dev/null
        done
    done
fi

if [ "$install_rc" = 0 ] && wants tests; then
    step "pip install '.[test]' (test tools, same constraints)" "$logs/pip-test.log" 3600 \
        "${in_root[@]}" PIP_CONSTRAINT=/opt/edgerun-src/docker/constraints.txt PIP_NO_CACHE_DIR=1 \
        /opt/edgerun/venv/bin/python -m pip install '/opt/edgerun-src[test]'
    "${in_root[@]}" chown -R edgerun:edgerun /opt/edgerun-src
    step "python -m pytest ${pytest_args}" "$logs/pytest.log" 14400 \
        "${as_app[@]}" sh -c "cd /opt/edgerun-src && python -m pytest -p no:cacheprovider \
            --junitxml=/tmp/pytest-arm64.xml $pytest_args"
    cp "$root/tmp/pytest-arm64.xml" "$logs/" 2>/dev/null
fi

python3 "$repo/docker/arm64_summary.py" --logs "$logs" --revision "$revision" --iterations "$iterations" \
    --pytest-args "$pytest_args" --qemu-cpu "$qemu_cpu" --output "$summary"
echo "arm64-check: summary $summary, logs $logs"
awk -F'\t' '$2 != 0 { bad = 1 } END { exit bad }' "$steps_tsv"
