#!/usr/bin/env bash
# The test command (see README): on a Debian 12 or 13 machine, as root, it installs what the
# tests need, builds bosun, runs the unit and integration tests (real sshd on loopback),
# then brings up the lab of systemd hosts, runs the lab tests and always takes the lab
# down again. Each stage prints how long it took.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

declare -a TIMES=()
FAILED=0

stage() {
    local name=$1
    shift
    local t0
    t0=$(date +%s.%N)
    echo "==> $name"
    "$@"
    local rc=$?
    local dt
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    TIMES+=("$(printf '%-28s %8ss  %s' "$name" "$dt" "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
    echo "<== $name: ${dt}s (exit $rc)"
    [ $rc -eq 0 ] || FAILED=1
    return $rc
}

summary() {
    echo
    echo "stage                          seconds  result"
    printf '%s\n' "${TIMES[@]}"
}
trap summary EXIT

install_deps() {
    local pkgs=(openssh-server openssh-client python3-venv debootstrap systemd-container iptables iproute2 curl ca-certificates openssl postgresql-client)
    command -v npm >/dev/null || pkgs+=(nodejs npm)
    command -v cc >/dev/null || pkgs+=(build-essential)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# promtool, amtool and the blackbox exporter check the monitoring role's rules and
# configurations offline (tests/alert_rules.rs). Their packages would start Prometheus,
# Alertmanager and the exporter if installed, so they are unpacked instead, once. Debian 13
# ships promtool in a package of its own, Debian 12 inside prometheus.
MONITORING_TOOLS=/opt/bosun-ci/promtool
monitoring_tools() {
    local t missing=0
    for t in promtool amtool prometheus-blackbox-exporter; do
        command -v $t >/dev/null || [ -x "$MONITORING_TOOLS/usr/bin/$t" ] || missing=1
    done
    [ $missing = 0 ] && return 0
    local pkgs=(prometheus-alertmanager prometheus-blackbox-exporter)
    if apt-cache show promtool >/dev/null 2>&1; then pkgs+=(promtool); else pkgs+=(prometheus); fi
    local tmp
    tmp=$(mktemp -d)
    # Package lists may be missing or stale (install_deps refreshes them only when it
    # installs something): refresh once and try again.
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}"); then
        apt-get update -qq && (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}") \
            || { rm -rf "$tmp"; return 1; }
    fi
    mkdir -p "$MONITORING_TOOLS"
    local deb
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$MONITORING_TOOLS" || { rm -rf "$tmp"; return 1; }; done
    rm -rf "$tmp"
    "$MONITORING_TOOLS/usr/bin/promtool" --version | head -n 1
}

stage "install dependencies" install_deps || exit 1
stage "monitoring tools (unpacked)" monitoring_tools || exit 1
stage "build" cargo build --release --workspace --all-targets || exit 1
stage "unit + integration tests" cargo test --release --workspace -- --test-threads 2 || exit 1
# Faults on loopback (issue 11), each printing how long the run took to end and what it left.
stage "fault drills (loopback)" cargo test --release --test faults -- --ignored --nocapture || exit 1

# The lab: real systemd hosts. Whatever happens in its tests, it is torn down and the
# machine is checked for leftovers.
tdir=${CARGO_TARGET_DIR:-target}
case $tdir in /*) ;; *) tdir=$(pwd)/$tdir ;; esac
BOSUN=$tdir/release/bosun
export BOSUN
lab_teardown() {
    stage "lab down + leftover check" cargo test --release --test lab_teardown -- --ignored
}
trap 'lab_teardown; summary' EXIT
# Every lab stage runs on each Debian release the site supports: the default (13) first.
lab_release() {
    local os=$1
    export BOSUN_LAB_OS=$os
    stage "[$os] lab up (7 hosts)" "$BOSUN" lab up --hosts 7 || return 1
    stage "[$os] lab tests" cargo test --release --test lab -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab database tier + failover drill" cargo test --release --test lab_db -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab operations (metrics, alerts, logs, backups)" cargo test --release --test lab_ops -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab application tier" cargo test --release --test lab_app -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab https" cargo test --release --test lab_tls -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab redis failover drill" cargo test --release --test lab_redis -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab jump hosts (pg via lb)" cargo test --release --test lab_jump -- --ignored --test-threads 1 --nocapture
    stage "[$os] lab faults (power-off mid-play)" cargo test --release --test lab_faults -- --ignored --test-threads 1 --nocapture
    # The benchmark's short form (bosun only, the seven lab hosts, one round) so it cannot
    # rot; the full comparison with Ansible and pyinfra is `bench/run.sh` (bench/README.md).
    stage "[$os] benchmark (short)" bench/run.sh --short
}
# A lab left by an earlier run (killed, or a machine image taken with it up) would be
# reused by `lab up` as it is: start from bare hosts.
lab_teardown
lab_release debian-13 || exit 1
lab_teardown
lab_release debian-12 || exit 1
exit $FAILED
