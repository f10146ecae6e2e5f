# Sourced by the benchmark scripts. The bench examples append the pid of every process they
# start to $BENCH_PIDS; whatever a killed or timed-out run leaves behind is stopped on exit by
# its id (and its process group). Usage: `. scripts/bench-pids.sh <name>`.
pids_file=$(mktemp -t "${1:-bench}-pids.XXXXXX")
export BENCH_PIDS=$pids_file
cleanup() {
  while read -r pid; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done <"$pids_file"
  rm -f "$pids_file"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
