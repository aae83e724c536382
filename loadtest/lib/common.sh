# Shell helpers shared by loadtest/run, loadtest/instructions and loadtest/cluster (sourced, not run).

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "loadtest/${0##*/}: $*" >&2; exit 1; }

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q . ; }
# A free loopback port, never Redis's standard one (the machine's own Redis may hold it).
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 40000 ))
    [[ $port -eq 6379 ]] && continue
    port_in_use "$port" || { echo "$port"; return 0; }
  done
  die "no free port found"
}
wait_http() { # url, what, [tries of 50 ms; default 200]
  for _ in $(seq 1 "${3:-200}"); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.05
  done
  die "$2 did not come up at $1"
}
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# otpgate's API on $OTPGATE_PORT with a bearer key; one field of a one-line JSON answer.
api() { # method path key [body]
  curl -s -X "$1" "http://127.0.0.1:$OTPGATE_PORT$2" -H "Authorization: Bearer $3" \
    -H 'Content-Type: application/json' ${4:+-d "$4"}
}
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }

# A redis-server on a free loopback port, without persistence, its files in DIR; sets
# REDIS_PORT and REDIS_PID and adds the pid to PIDS (the caller's trap stops it).
start_redis() { # dir [extra redis-server arguments...]
  local dir="$1"
  shift
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis-$REDIS_PORT.log" --daemonize no "$@" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || die "redis-server did not start (see $dir/redis-$REDIS_PORT.log)"
}
# The message sink of examples/baseline.rs on a free loopback port: SINK_PORT, its pid in PIDS.
start_sink() { # baseline binary, dir for its log
  SINK_PORT=$(free_port)
  "$1" --mode sink --listen "127.0.0.1:$SINK_PORT" 2>"$2/sink.log" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$SINK_PORT/stats" "the sink"
}
# Pumping-guard thresholds a load test cannot trip (PUT /v1/policy {"abuse":{"guard":{...}}}):
# sends to fresh numbers never approved would rightly pause a prefix after 50.
NEVER_TRIPS='{"min_sends":1000000000000,"min_conversion_percent":0,"surge_factor":1000000,"surge_min_sends":1000000000000,"cooldown_seconds":60}'
