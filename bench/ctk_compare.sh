#!/usr/bin/env bash
# Measures faultline against Chaos Toolkit on the same Chaos Toolkit files:
#   1. validate a one-probe experiment (wall time, peak RSS)
#   2. run a one-probe, one-action experiment against a local HTTP server
#   3. detection: time from the target failing to the run stopping, with
#      --hypothesis-strategy continuously --hypothesis-frequency 0.1 --fail-fast
# Needs: python3 with venv (Debian: python3-venv), GNU time (Debian: time), cargo. PyPI must be reachable.
# Writes the results to target/ctk-compare.md (copy them into the
# "faultline vs Chaos Toolkit" section of docs/performance.md) and prints a table.
#
# Usage: bench/ctk_compare.sh [RUNS [SEED]]   (RUNS per measurement, default 15;
#        SEED fixes the random failure points of the detection measure)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${1:-15}"
SEED="${2:-}"
WORK="$(mktemp -d /tmp/ctk-compare.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

command -v python3 >/dev/null || { echo "python3 is missing (Debian package python3)" >&2; exit 69; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (Debian package time)" >&2; exit 69; }
python3 -c 'import venv, ensurepip' 2>/dev/null || {
    echo "python3 venv/ensurepip is missing (Debian package python3-venv)" >&2; exit 69; }

echo "== creating a throw-away venv with chaostoolkit in $WORK/venv"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check chaostoolkit
CHAOS="$WORK/venv/bin/chaos"
"$CHAOS" --no-version-check --version

echo "== building faultline --release"
(cd "$ROOT" && cargo build --release --quiet)
FAULTLINE="$ROOT/target/release/faultline"
"$FAULTLINE" --version

echo "== measuring ($RUNS runs each)"
python3 "$ROOT/bench/ctk/bench.py" \
    --chaos "$CHAOS" --faultline "$FAULTLINE" --runs "$RUNS" \
    --work "$WORK" --out "$ROOT/target/ctk-compare.md" ${SEED:+--seed "$SEED"}
