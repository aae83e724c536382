# Shell helpers shared by loadtest/run and loadtest/instructions (sourced, not run).

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
