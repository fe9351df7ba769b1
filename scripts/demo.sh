#!/usr/bin/env bash
# The main job, end to end, on a Debian 12 machine (as root; `make demo` runs scripts/setup.sh demo
# first, which installs mmdebstrap, runc and a venv):
#   1. base images from Debian packages (forklift bootstrap), skipped when present;
#   2. the multi-stage build of examples/rust-service (apt installs cargo in the builder stage);
#   3. the built image runs with `forklift run` (host network), its HTTP endpoint answers curl;
#   4. the size report: builder stage against the final image.
# Safe to run again: the second run finds the bases and the build cache, and takes seconds.
# Environment: FORKLIFT_ROOT (the store; default ~/.local/share/forklift), PORT (default 8080),
# FORKLIFT (the forklift command; default .venv/bin/forklift).
set -euo pipefail
cd "$(dirname "$0")/.."

FORKLIFT=${FORKLIFT:-.venv/bin/forklift}
IMAGE=rust-service:latest
EXAMPLE=examples/rust-service
PY=.venv/bin/python
[[ -x $PY ]] || PY=python3

if [[ -t 1 ]]; then bold=$'\e[1m' dim=$'\e[2m' red=$'\e[31m' reset=$'\e[0m'; else bold='' dim='' red='' reset=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
note() { printf '%s    %s%s\n' "$dim" "$*" "$reset"; }
fail() {
  printf '%sdemo: %s%s\n' "$red" "$*" "$reset" >&2
  if ((${#timings[@]})); then
    printf 'timings so far:\n' >&2
    printf '    %s\n' "${timings[@]}" >&2
  fi
  exit 1
}
now() { date +%s.%N; }
declare -a timings=()
since() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

command -v "$FORKLIFT" >/dev/null 2>&1 || [[ -x $FORKLIFT ]] || fail "$FORKLIFT not found (run: bash scripts/setup.sh demo)"
demo_start=$(now)
cold=0
note "store: ${FORKLIFT_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/forklift} (FORKLIFT_ROOT chooses another)"

# ---- 1. base images ----------------------------------------------------------------------------------
# The names the example's Dockerfile uses: FROM debian:${DEBIAN} (builder), debian:${DEBIAN}-slim (runtime).
step "Base images from Debian packages (forklift bootstrap)"
# The slim runtime base is made in the background while the builder base is made in view: two
# mmdebstrap runs wait on the mirror and on dpkg, so side by side they take little more than one.
t0=$(now)
slim_pid=
slim_log=$(mktemp /tmp/forklift-demo-bootstrap.XXXXXX)
if "$FORKLIFT" inspect debian:bookworm-slim >/dev/null 2>&1; then
  note "debian:bookworm-slim is in the store"
else
  cold=1
  note "debian:bookworm-slim: bootstrapping in the background (log: $slim_log)"
  "$FORKLIFT" bootstrap debian:bookworm-slim --slim >"$slim_log" 2>&1 &
  slim_pid=$!
fi
if "$FORKLIFT" inspect debian:bookworm >/dev/null 2>&1; then
  note "debian:bookworm is in the store"
else
  cold=1
  b0=$(now)
  if ! "$FORKLIFT" bootstrap debian:bookworm; then
    # SIGINT: forklift stops its mmdebstrap and removes its temporary files.
    [[ -n $slim_pid ]] && kill -INT "$slim_pid" 2>/dev/null && wait "$slim_pid" 2>/dev/null
    fail "forklift bootstrap debian:bookworm failed"
  fi
  timings+=("bootstrap debian:bookworm: $(since "$b0")s")
fi
if [[ -n $slim_pid ]]; then
  wait "$slim_pid" || { cat "$slim_log" >&2; fail "forklift bootstrap debian:bookworm-slim failed"; }
  done_line=$(grep -E '^debian:bookworm-slim: ' "$slim_log" || true)
  printf '%s\n' "$done_line"
  timings+=("bootstrap debian:bookworm-slim (in parallel): ${done_line##* in }")
fi
rm -f "$slim_log"
timings+=("bases (total): $(since "$t0")s")

# ---- 2. the multi-stage build ------------------------------------------------------------------------
step "Multi-stage build: forklift build -t $IMAGE $EXAMPLE"
"$FORKLIFT" inspect "$IMAGE" >/dev/null 2>&1 || cold=1
t0=$(now)
"$FORKLIFT" build -t "$IMAGE" "$EXAMPLE"
build_seconds=$(since "$t0")
timings+=("build: ${build_seconds}s")

# ---- 3. run it and call it ---------------------------------------------------------------------------
# The service listens on $PORT on the host (forklift run uses the host network by default).
port_free() { "$PY" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null; }
PORT=${PORT:-8080}
if ! port_free "$PORT"; then
  busy=$PORT
  PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  note "port $busy is taken; the service gets PORT=$PORT"
fi
step "Run: forklift run --rm -e PORT=$PORT $IMAGE"
run_log=$(mktemp /tmp/forklift-demo-run.XXXXXX)
t0=$(now)
"$FORKLIFT" run --rm -e "PORT=$PORT" "$IMAGE" >"$run_log" 2>&1 &
run_pid=$!
stop_service() {
  if kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM "$run_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$run_pid" 2>/dev/null || true
  fi
  wait "$run_pid" 2>/dev/null || true
}
trap 'stop_service; rm -f "$run_log"' EXIT

url=http://127.0.0.1:$PORT
up=0
for _ in $(seq 300); do
  if ! kill -0 "$run_pid" 2>/dev/null; then
    cat "$run_log" >&2
    fail "forklift run exited before the service listened"
  fi
  if curl -fsS -o /dev/null "$url/healthz" 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
((up)) || { cat "$run_log" >&2; fail "the service did not answer on $url within 30s"; }
timings+=("run until the port answers: $(since "$t0")s")
note "curl $url/"
body=$(curl -fsS "$url/")
printf '    %s\n' "$body"
[[ $body == hello* ]] || fail "unexpected answer from $url/: $body"
note "curl $url/healthz -> $(curl -fsS "$url/healthz")"

step "Stop the container"
stop_service
# The container must be gone with forklift run: nothing may answer on the port any more.
for _ in $(seq 50); do curl -fsS -o /dev/null "$url/healthz" 2>/dev/null || break; sleep 0.1; done
if curl -fsS -o /dev/null "$url/healthz" 2>/dev/null; then
  fail "the service still answers on $url after forklift run was stopped"
fi
note "stopped; nothing listens on port $PORT"

# ---- 4. the size report ------------------------------------------------------------------------------
step "What the multi-stage build saved: forklift size $IMAGE"
"$FORKLIFT" size "$IMAGE"

step "Timings ($([[ $cold == 1 ]] && echo cold || echo "warm: bases present, build cached"))"
for line in "${timings[@]}"; do printf '    %s\n' "$line"; done
printf '    %stotal: %ss%s\n' "$bold" "$(since "$demo_start")" "$reset"
