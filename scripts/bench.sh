#!/usr/bin/env bash
# The benchmarks: every figure is the median of several runs with min–max, next to a reference
# measured in the same run on the same machine, and a verdict against the target of issue 6.
# Prints one markdown report on stdout (progress on stderr) and keeps a copy under
# target/bench/. Loopback only; each section is bounded in time.
#
#   scripts/bench.sh                    every section (about 10 minutes on 2 cores, once built)
#   scripts/bench.sh --smoke            each section briefly (~10 s of measuring): still runs?
#   scripts/bench.sh rest startup ...   only these sections
#
# Sections: rest fanout memory turns startup desktop.
# Needs: wrk (apt install wrk); PostgreSQL on 127.0.0.1:5432 (trust auth, database test) for
# the PostgreSQL rows, or BENCH_DATABASE_URL; the desktop packages for the desktop section
# (scripts/install-desktop.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

all_sections=(rest fanout memory turns startup desktop)
smoke=0
sections=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    rest | fanout | memory | turns | startup | desktop) sections+=("$arg") ;;
    *)
      echo "usage: scripts/bench.sh [--smoke] [${all_sections[*]}]" >&2
      exit 2
      ;;
  esac
done
((${#sections[@]})) || sections=("${all_sections[@]}")

# Stops whatever the examples started when this script ends, however it ends.
. scripts/bench-pids.sh bench

for section in "${sections[@]}"; do
  if [ "$section" = rest ] && ! command -v wrk >/dev/null; then
    echo "bench: the rest section needs wrk (apt install wrk)" >&2
    exit 2
  fi
done

echo "bench: building (release)" >&2
# The server on its own: built together with the examples, it would get the test-only
# `fault-injection` feature that the examples' dev-dependency on this package turns on.
cargo build --release --quiet --bin computer-use-server
cargo build --release --quiet --example bench_rest --example bench_events \
  --example bench_turns --example bench_startup

mode=full
((smoke)) && mode=smoke
report_dir=target/bench
mkdir -p "$report_dir"
report="$report_dir/report-$(date -u +%Y%m%dT%H%MZ)-$mode.md"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_gib=$(awk '/^MemTotal:/ { printf "%d", $2 / 1048576 + 0.5 }' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "## Benchmarks ($mode run)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, ${cpu:-unknown CPU}, ${mem_gib} GiB," \
    "$(uname -s) $(uname -r), $(rustc --version | cut -d' ' -f1-2), commit $commit;" \
    "\`scripts/bench.sh${*:+ $*}\`."
  echo
} | tee "$report"

smoke_flag=()
((smoke)) && smoke_flag=(--smoke)

# One section: its command bounded by a timeout (seconds); its markdown goes to the report.
# A smoke run only asks whether a section still runs, so a failure gets one more try there (a
# loaded machine can miss one of the desktop's start-up deadlines); a full run reports it.
run_section() {
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS tries=1
  ((smoke)) && tries=2
  echo "bench: $name" >&2
  for ((try = 1; try <= tries; try++)); do
    local out
    if out=$(timeout --kill-after=10 "$limit" "$@"); then
      printf '%s\n\n' "$out" | tee -a "$report"
      echo "bench: $name took $((SECONDS - started)) s" >&2
      return 0
    fi
    echo "bench: the $name section failed or ran over ${limit} s (try $try of $tries)" >&2
  done
  return 1
}

failed=()
for section in "${sections[@]}"; do
  case "$section" in
    rest) run_section rest 400 target/release/examples/bench_rest "${smoke_flag[@]}" || failed+=(rest) ;;
    fanout) run_section fanout 300 target/release/examples/bench_events --only fanout "${smoke_flag[@]}" || failed+=(fanout) ;;
    memory) run_section memory 300 target/release/examples/bench_events --only memory "${smoke_flag[@]}" || failed+=(memory) ;;
    turns) run_section turns 300 target/release/examples/bench_turns "${smoke_flag[@]}" || failed+=(turns) ;;
    startup) run_section startup 120 target/release/examples/bench_startup "${smoke_flag[@]}" || failed+=(startup) ;;
    desktop)
      if command -v Xvfb >/dev/null && command -v x11vnc >/dev/null; then
        run_section desktop 300 scripts/bench-desktop.sh "${smoke_flag[@]}" || failed+=(desktop)
      else
        echo "bench: desktop skipped (no Xvfb/x11vnc; scripts/install-desktop.sh)" | tee -a "$report" >&2
      fi
      ;;
  esac
done

echo "bench: report saved as $report" >&2
if ((${#failed[@]})); then
  echo "bench: failed: ${failed[*]}" >&2
  exit 1
fi
