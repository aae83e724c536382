#!/usr/bin/env bash
# Redis instructions per admission (abuse_admit.lua alone, steady state), counted by callgrind on
# a redis-server of its own: the figure docs/performance.md gives for the admission, repeatable
# whatever else the machine does. Usage: benches/admission_in_redis.sh [REV] (default: the work
# tree; REV: the scripts as they were at that commit, to compare). N calls (default 3000).
# Needs valgrind (callgrind_control), redis-server, redis-benchmark, redis-cli, python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REV="${1:-}"
N="${N:-3000}"
WORK=$(mktemp -d)
trap 'kill "$RPID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
# The prelude's `words` and `int`, abuse_window.lua and abuse_admit.lua, as RedisAbuseStore joins them.
python3 - "$ROOT" "$REV" >"$WORK/admit.lua" <<'PY'
import subprocess, sys
root, rev = sys.argv[1], sys.argv[2]
def read(path):
    if rev:
        return subprocess.run(['git', '-C', root, 'show', f'{rev}:{path}'], check=True,
                              capture_output=True, text=True).stdout
    return open(f'{root}/{path}').read()
blocks = read('src/redis/scripts/prelude.lua').split('\n\n')
head = '\n\n'.join(b for b in blocks if 'local function words' in b or 'local function int' in b)
print(head + '\n\n' + read('src/redis/scripts/abuse_window.lua') + '\n'
      + read('src/redis/scripts/abuse_admit.lua'))
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/redis.%p.out" \
  redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
RPID=$!
for _ in $(seq 1 300); do [[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" == PONG ]] && break; sleep 0.1; done
A='P:{a:ACd95d97a720d59adebfe2d1f8cdaa62af}:ab:'
NOW=1796308267071; MINUTE=$((NOW / 60000)); DAY=$((NOW / 86400000))
# The rules never trip (as loadtest/instructions sets them), so every call is the steady state.
NEVER=1000000000000
SETTINGS="50 20 10 100 3600000 200 20 10 1000 3600000 1000 90060000 120532929 $A"
SHA=$(redis-cli -p "$PORT" script load "$(cat "$WORK/admit.lua")")
ARGS=(EVALSHA "$SHA" 5 "${A}p:+4915120000" "${A}c:DE" "${A}idx" "${A}blk" "${A}d:$DAY"
  "$NOW" 1 DE +4915120000 "$MINUTE" "$NEVER" "$NEVER" "0 0" "$SETTINGS")
redis-benchmark -p "$PORT" -n 200 -c 1 -q "${ARGS[@]}" >/dev/null
callgrind_control -z "$RPID" >/dev/null 2>&1; callgrind_control -i on "$RPID" >/dev/null 2>&1
redis-benchmark -p "$PORT" -n "$N" -c 1 -q "${ARGS[@]}" >/dev/null
callgrind_control -i off "$RPID" >/dev/null 2>&1; callgrind_control -d "$RPID" >/dev/null 2>&1
TOTAL=$(awk '/^totals:/ { print $2 }' "$(ls -t "$WORK"/redis.*.out* | head -n1)")
echo "admission (${REV:-work tree}): $((TOTAL / N)) Redis instructions per call ($N calls)"
