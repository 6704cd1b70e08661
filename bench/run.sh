#!/usr/bin/env bash
# noop50: bosun against Ansible and pyinfra, and bosun at 100/1000 hosts. See bench/README.md.
#   bench/run.sh                          lab mode, all three tools, 3 rounds
#   bench/run.sh --loopback 7 --scale 100,1000 --peers-at 100
#   bench/run.sh --short                  CI: bosun only, lab mode, 1 round (no venv, no PyPI)
#   bench/run.sh --short --loopback 7     CI without the lab
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bosun=${BOSUN:-$repo/target/release/bosun}
if [ ! -x "$bosun" ] && [ -n "${CARGO_TARGET_DIR:-}" ]; then
  bosun=$CARGO_TARGET_DIR/release/bosun
fi
if [ ! -x "$bosun" ]; then
  echo "bench: building bosun (cargo build --release)" >&2
  (cd "$repo" && cargo build --release)
fi
exec python3 "$here/bench.py" --bosun "$bosun" "$@"
