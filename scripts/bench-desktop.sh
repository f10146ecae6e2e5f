#!/usr/bin/env bash
# Desktop benchmarks: screenshot latency, and VNC proxy throughput and round trips against a
# direct TCP connection to the same x11vnc. Loopback only; every figure is the median of the
# runs with min–max, and references are measured in the same run on the same machine.
#
#   scripts/bench-desktop.sh           the full run (well under 2 minutes once built)
#   scripts/bench-desktop.sh --smoke   ~5 s: one size, one short run each; checks it all runs
#
# Stdout carries only the two markdown sections (`### Screenshot …`, `### VNC proxy …`), so
# that scripts/bench.sh can concatenate them with its own; the build, the machine line and
# the timing go to stderr.
#
# Needs Xvfb, x11vnc, openbox, xterm and xdotool (scripts/install-desktop.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="scripts/bench-desktop.sh${*:+ $*}"

smoke=0
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) echo "usage: scripts/bench-desktop.sh [--smoke]" >&2; exit 2 ;;
esac

# Stops whatever the examples started when this script ends, however it ends.
. scripts/bench-pids.sh bench-desktop

cargo build --release --quiet --example bench_screenshot --example bench_vnc >&2

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_gib=$(awk '/^MemTotal:/ { printf "%d", $2 / 1048576 + 0.5 }' /proc/meminfo)
{
  echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, ${mem_gib} GiB, $(uname -s) $(uname -r)," \
    "$(rustc --version | cut -d' ' -f1-2), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "command: $command_line"
} >&2

if ((smoke)); then
  shot_args=(--sizes 1024x768 --runs 3)
  vnc_args=(--sizes 640x480 --runs 1 --seconds 0.2 --pings 10)
else
  shot_args=(--sizes 1024x768,1920x1080 --runs 30)
  vnc_args=(--sizes 1024x768,1920x1080 --runs 5 --seconds 0.6 --pings 150)
fi

# Each benchmark is bounded; a timeout or a failure fails the script (set -e, pipefail).
started=$SECONDS
shots=$(timeout 60 target/release/examples/bench_screenshot "${shot_args[@]}")
# x11vnc as the server starts it waits 20 ms (-defer) before each update, which would hide
# the proxy behind that timer; -defer 0 lets the figures show the proxy's own cost.
vnc=$(timeout 90 target/release/examples/bench_vnc "${vnc_args[@]}" --x11vnc "-defer 0")

printf '%s\n\n' "$shots" "$vnc"
echo "took $((SECONDS - started)) s (after the build)" >&2
