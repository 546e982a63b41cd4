#!/usr/bin/env bash
# Compares faultline's built-in stressors with stress-ng, side by side:
#   - CPU: the load each achieves against its target (25/50/75/100% of one CPU),
#     measured from utime+stime of every process the stressor started;
#   - memory: the resident memory reached against the target, how long it took,
#     and the CPU burnt while holding it;
#   - overhead: resident memory of an idle-ish worker, start-up time.
# Prints a Markdown report on stdout.
#
# Usage: bench/stress_vs_stressng.sh [SECONDS_PER_RUN]   (default 10)
#   FAULTLINE=path/to/faultline   the binary (default: target/release/faultline, built if missing)
# Needs: stress-ng (Debian package stress-ng). As root on cgroup v1 the
# measured processes run in a cpu cgroup with the highest weight, so other
# work on the machine disturbs the numbers less; the script removes it at the end.
set -euo pipefail

SECS=${1:-10}
cd "$(dirname "$0")/.."
FAULTLINE=${FAULTLINE:-target/release/faultline}
if [ ! -x "$FAULTLINE" ]; then
    cargo build --release --quiet
fi
command -v stress-ng >/dev/null || { echo "stress-ng is not installed (Debian package stress-ng)" >&2; exit 69; }
HZ=$(getconf CLK_TCK)
MIB=$((1024 * 1024))

# Optional: a high-weight cpu cgroup (cgroup v1) for this script and its children.
CG=""
if [ "$(id -u)" = 0 ] && [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.shares ]; then
    CG=/sys/fs/cgroup/cpu/faultline-bench-$$
    HOME_CG=/sys/fs/cgroup/cpu$(awk -F: '$2=="cpu"{print $3}' /proc/self/cgroup)
    mkdir "$CG"
    echo 262144 > "$CG/cpu.shares"
    echo $$ > "$CG/cgroup.procs"
fi
cleanup() {
    if [ -n "$CG" ]; then
        echo $$ > "$HOME_CG/cgroup.procs" 2>/dev/null || true
        for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        sleep 0.2
        rmdir "$CG" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Sum of utime+stime (ticks) of every process in session $1.
session_ticks() {
    local t
    # (a process may exit while awk reads the files: default to 0, never empty)
    t=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v sid="$1" '{
        # comm may hold spaces: fields after the last ")"
        s = $0; sub(/.*\) /, "", s); n = split(s, f, " ");
        if (f[4] == sid) t += f[12] + f[13]
    } END { print t + 0 }')
    echo "${t:-0}"
}
# Sum of VmRSS (bytes) of every process in session $1.
session_rss() {
    local total=0 p
    for p in $(ps -e -o pid=,sid= | awk -v sid="$1" '$2==sid{print $1}'); do
        local kb
        kb=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0} * 1024))
    done
    echo $total
}
# Starts "$@" in a new session; prints its session id.
start() {
    setsid "$@" >/dev/null 2>&1 &
    echo $!
}
stop() {
    local p
    kill -9 -- "-$1" 2>/dev/null || true
    for p in $(ps -e -o pid=,sid= | awk -v sid="$1" '$2==sid{print $1}'); do
        kill -9 "$p" 2>/dev/null || true
    done
    sleep 0.1
}

# CPU load (in CPUs, 3 decimals) of session $1 over $SECS, after a 1 s settle.
measure_cpu() {
    sleep 1
    local a b t0 t1
    a=$(session_ticks "$1"); t0=$(date +%s.%N)
    sleep "$SECS"
    b=$(session_ticks "$1"); t1=$(date +%s.%N)
    awk -v a="$a" -v b="$b" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.3f", (b-a)/hz/(t1-t0)}'
}

echo "# faultline stressors vs stress-ng"
echo
echo "- machine: $(nproc) CPUs ($(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}')), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "- faultline: $FAULTLINE ($(stat -c %s "$FAULTLINE" | awk '{printf "%.1f MiB", $1/1048576}')), $(stress-ng --version | head -1)"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)${CG:+; measured processes in a cpu cgroup with cpu.shares=262144}"
echo "- each CPU figure: utime+stime of all the stressor's processes over ${SECS} s, after 1 s to settle"
echo
echo "## CPU: one worker at a target load"
echo
echo "| target | faultline stress-worker cpu | stress-ng --cpu 1 --cpu-load |"
echo "|---|---|---|"
for load in 25 50 75 100; do
    sid=$(start "$FAULTLINE" stress-worker cpu --load "$load")
    f=$(measure_cpu "$sid"); stop "$sid"
    sid=$(start stress-ng --cpu 1 --cpu-load "$load" --timeout $((SECS + 5)) --quiet)
    s=$(measure_cpu "$sid"); stop "$sid"
    echo "| ${load}% | $f | $s |"
done
echo

NBUSY=$(nproc)
echo "## CPU under contention: one worker at 50% next to $NBUSY busy loops"
echo
echo "A fair share here is $(awk -v n="$NBUSY" -v c="$(nproc)" 'BEGIN{printf "%.2f", c/(n+1)}') CPUs, so 50% is reachable; a stressor that"
echo "keeps wall-clock on/off phases gets only part of a CPU while \"on\" and falls short."
echo
echo "| target | faultline stress-worker cpu | stress-ng --cpu 1 --cpu-load |"
echo "|---|---|---|"
busy_sids=()
for _ in $(seq 1 "$NBUSY"); do busy_sids+=("$(start sh -c 'while :; do :; done')"); done
sid=$(start "$FAULTLINE" stress-worker cpu --load 50)
f=$(measure_cpu "$sid"); stop "$sid"
sid=$(start stress-ng --cpu 1 --cpu-load 50 --timeout $((SECS + 5)) --quiet)
s=$(measure_cpu "$sid"); stop "$sid"
for b in "${busy_sids[@]}"; do stop "$b"; done
echo "| 50% | $f | $s |"
echo

echo "## Memory: allocate and hold 256 MiB"
echo
echo "| tool | RSS reached (MiB) | time to reach 250 MiB (s) | CPU while holding (CPUs) |"
echo "|---|---|---|---|"
mem_run() {
    local label=$1; shift
    local t0 sid rss reach="n/a" cpu
    t0=$(date +%s.%N)
    sid=$(start "$@")
    for _ in $(seq 1 200); do
        rss=$(session_rss "$sid")
        if [ "$rss" -ge $((250 * MIB)) ]; then
            reach=$(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN{printf "%.2f", t1-t0}')
            break
        fi
        sleep 0.05
    done
    cpu=$(measure_cpu "$sid")
    rss=$(session_rss "$sid")
    stop "$sid"
    echo "| $label | $((rss / MIB)) | $reach | $cpu |"
}
mem_run "faultline stress-worker memory --size 256MiB" "$FAULTLINE" stress-worker memory --size $((256 * MIB))
mem_run "stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 (allocate, then sleep)" stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 --timeout $((SECS + 30)) --quiet
mem_run "stress-ng --vm 1 --vm-bytes 256M --vm-keep (keep rewriting)" stress-ng --vm 1 --vm-bytes 256M --vm-keep --timeout $((SECS + 30)) --quiet
echo
echo "RSS counts every process the tool started (stress-ng runs a parent and a worker)."
echo

echo "## Overhead"
echo
echo "| | faultline | stress-ng |"
echo "|---|---|---|"
sid=$(start "$FAULTLINE" stress-worker cpu --load 1); sleep 1
f_rss=$(session_rss "$sid"); stop "$sid"
sid=$(start stress-ng --cpu 1 --cpu-load 1 --timeout 10 --quiet); sleep 1
s_rss=$(session_rss "$sid"); stop "$sid"
echo "| RSS of a 1% CPU stressor, all processes (KiB) | $((f_rss / 1024)) | $((s_rss / 1024)) |"
startup() {
    # Time from exec to the first CPU tick used by the stressor, averaged over 5 runs.
    local total=0 i t0 sid
    for i in 1 2 3 4 5; do
        t0=$(date +%s%N)
        sid=$(start "$@")
        while [ "$(session_ticks "$sid")" -lt 1 ]; do sleep 0.005; done
        total=$((total + ($(date +%s%N) - t0) / 1000000))
        stop "$sid"
    done
    echo $((total / 5))
}
echo "| time until the stressor burns CPU (ms, mean of 5) | $(startup "$FAULTLINE" stress-worker cpu --load 100) | $(startup stress-ng --cpu 1 --timeout 10 --quiet) |"
echo "| processes per CPU worker | 1 | $(sid=$(start stress-ng --cpu 1 --timeout 10 --quiet); sleep 1; ps -e -o sid= | awk -v s="$sid" '$1==s' | wc -l; stop "$sid") |"
