#!/usr/bin/env bash
# What each order costs the broker on the wire, ours against the MassTransit twin: for each rate, each
# side's three services connect through a counting proxy (bench/amqp_census.py) while SagaBench load
# offers that rate for a fixed time; the proxy counts every connection's socket reads, bytes, frames
# and methods in each direction and how many deliveries or publishes each ack, nack or confirm
# settled. The broker's CPU per order is measured in the same step (the proxy's own CPU is not in it).
# Uses the Release tree and the twin bench/run.sh builds (builds them when missing); starts its own
# broker node. Writes $out/census.jsonl and $out/census.md.
#   bash bench/census.sh                      rates 200 400 600, 15 s each
#   BENCH_CENSUS_RATES="300" BENCH_SECONDS=10 bash bench/census.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source bench/lib.sh
read_common_settings 15

rates=${BENCH_CENSUS_RATES:-"200 400 600"}
amqp_port=${BENCH_AMQP_PORT:-23682}
management_port=${BENCH_MANAGEMENT_PORT:-23684}
proxy_port=${BENCH_PROXY_PORT:-23690}
http_port=${BENCH_HTTP_PORT:-5620}
sides=${BENCH_CENSUS_SIDES:-"ours twin"}

find_or_build "$sides"
mkdir -p "$out"
start_private_broker census-broker

# Asks the proxy for its totals and waits until they are written.
snapshot() {
    local file=$1
    rm -f "$file"
    kill -USR1 "$proxy_pid"
    for _ in $(seq 1 100); do [ -s "$file" ] && return 0; sleep 0.05; done
    echo "the census proxy wrote no totals" >&2
    return 1
}

results="$work/census.jsonl"
: > "$results"
for rate in $rates; do
    for side in $sides; do
        census_vhost="census-$side-$$"
        python3 bench/amqp_census.py --listen "$proxy_port" --upstream "127.0.0.1:$amqp_port" \
            --out "$work/totals.json" &
        proxy_pid=$!
        pids+=("$proxy_pid")  # stopped at exit if a step fails
        for _ in $(seq 1 100); do [ -s "$work/totals.json" ] && break; sleep 0.05; done
        side_amqp_port=$proxy_port start_side "$side" "$census_vhost" "$http_port"
        # The services have connected and declared their topology: count from here.
        snapshot "$work/totals.json"
        cp "$work/totals.json" "$work/before.json"
        echo "== census: $side at $rate orders/s for $seconds s" >&2
        steps_before=$(wc -l < "$results")
        measure_side_step "$http_port" "$census_vhost" "$rate" "{\"kind\": \"census-step\", \"side\": \"$side\"}"
        [ "$(wc -l < "$results")" -gt "$steps_before" ]
        snapshot "$work/totals.json"
        step_row=$(tail -n 1 "$results")
        sed -i '$ d' "$results"
        python3 bench/census_row.py "$step_row" "$work/before.json" "$work/totals.json" >> "$results"
        stop_side "$census_vhost"
        kill -TERM "$proxy_pid"
        wait "$proxy_pid" 2> /dev/null || true
    done
done
cp "$results" "$out/census.jsonl"
python3 bench/census_report.py "$out/census.jsonl" > "$out/census.md"
cat "$out/census.md"
