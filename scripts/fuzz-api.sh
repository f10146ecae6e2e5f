#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis (PyPI): every response
# must be a non-5xx, carry a documented status, and match its documented schema.
#
# Usage: scripts/fuzz-api.sh [path/to/computer-use-server]
# (default: the newer of target/release and target/debug). Environment: FUZZ_MAX_EXAMPLES
# (default 30 per operation), FUZZ_MAX_TIME (default 30 s for the whole run), FUZZ_SEED.
#
# The server runs on a free loopback port with a temp SQLite file, no desktop, rate limits off,
# a random API_TOKEN (so schemathesis also checks that dropping it is refused) and no API key
# (a posted message is queued and its turn ends with an `error` event).
# Streams (SSE, WebSocket, the VNC proxy) and static files are left out: they are not JSON
# request/response operations, and tests/streaming.rs, tests/vnc.rs and tests/ui.rs cover them.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-}"
if [ -z "$bin" ]; then
  for candidate in target/release/computer-use-server target/debug/computer-use-server; do
    [ -x "$candidate" ] && { [ -z "$bin" ] || [ "$candidate" -nt "$bin" ]; } && bin="$candidate"
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "fuzz-api: no server binary (cargo build first)" >&2; exit 2; }
command -v schemathesis >/dev/null || {
  echo "fuzz-api: schemathesis is not installed (python3 -m pip install schemathesis)" >&2
  exit 2
}

work="$(mktemp -d)"
token="fuzz-$RANDOM$RANDOM$RANDOM"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Only the variables set here reach the server: nothing from the caller's configuration.
env -i PATH="$PATH" HOME="$work" RUST_LOG=info \
  HOST=127.0.0.1 PORT=0 API_TOKEN="$token" DATABASE_URL="sqlite://$work/fuzz.db" DESKTOP_MODE=none \
  RATE_LIMIT_MESSAGES=0 RATE_LIMIT_SESSIONS=0 MODEL_MAX_RETRIES=0 \
  "$bin" 2>"$work/server.log" &
server_pid=$!

addr=""
for _ in $(seq 1 200); do
  addr="$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/server.log" | head -n1)"
  [ -n "$addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$addr" ]; then
  echo "fuzz-api: the server did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
echo "fuzz-api: $bin on http://$addr"

# Run from the temp directory: schemathesis and hypothesis keep their caches in the cwd.
status=0
(cd "$work" && schemathesis run "http://$addr/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,ignored_auth \
  --phases examples,coverage,fuzzing \
  --max-examples "${FUZZ_MAX_EXAMPLES:-30}" \
  --max-time "${FUZZ_MAX_TIME:-30}" \
  ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
  --header "Authorization: Bearer $token" \
  --request-timeout 10 \
  --workers 1 \
  --exclude-path-regex '^/(ws/|novnc/|ui/|docs/|$)' \
  --exclude-path '/api/sessions/{session_id}/stream' \
  --suppress-health-check all \
  --generation-database none \
  --no-color) \
  || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "fuzz-api: the server died during the run:" >&2
  cat "$work/server.log" >&2
  status=1
elif grep -q "panicked" "$work/server.log"; then
  echo "fuzz-api: a handler panicked:" >&2
  grep -A3 "panicked" "$work/server.log" >&2
  status=1
fi
exit "$status"
