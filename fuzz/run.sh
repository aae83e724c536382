#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS (default 600), niced, and prints one
# line of figures per target: executions, crashes (artifacts), corpus size.
# Usage: fuzz/run.sh [seconds] [target ...]   (default: every target)
set -u
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p logs
# Built once up front; the binaries then run directly, so that editing the sources during a run
# never rebuilds under it.
cargo fuzz build -s none -O -a || exit 1
bin=target/x86_64-unknown-linux-gnu/release
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    [ -d "seeds/$target" ] && cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null
    dict=()
    case $target in
        receipts | receipt_signatures) dict=(-dict=dict/receipts.dict) ;;
        webauthn) dict=(-dict=dict/webauthn.dict) ;;
        http_api | http_twilio | router | tokens) dict=(-dict=dict/http.dict) ;;
    esac
    started=$(date -u +%H:%M:%S)
    nice -n 19 "$bin/$target" "corpus/$target" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" "${dict[@]}" >"logs/$target.log" 2>&1
    status=$?
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$')
    crashes=$(find "artifacts/$target" -type f | wc -l)
    corpus=$(find "corpus/$target" -type f | wc -l)
    echo "$target started=$started seconds=$seconds exit=$status executions=${executions:-?} crashes=$crashes corpus=$corpus"
done
