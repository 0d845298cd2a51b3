#!/usr/bin/env bash
# The highest rate ours and the MassTransit twin sustain when the broker has a core of its own: the
# broker node's threads pinned to core 0 (taskset), the services and the load generator to core 1.
# On two shared cores the broker's share of the CPU bounds both systems; this shows what each would
# do where the broker is not competing with them. SagaBench max for each side on fresh processes,
# from the start rates below, as bench/run.sh finds the maximum. Writes $out/pinned_max.jsonl and
# prints both maxima and their ratio.
#   bash bench/pinned_max.sh
#   BENCH_SECONDS=10 BENCH_PINNED_SIDES=twin bash bench/pinned_max.sh
# Each side first gets 20 s at 100 orders/s that the search does not count (see the warm-up below).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source bench/lib.sh
read_common_settings 15

decision_runs=${BENCH_DECISION_RUNS:-3}
ours_start=${BENCH_OURS_START:-900}
twin_start=${BENCH_TWIN_START:-150}
amqp_port=${BENCH_AMQP_PORT:-23882}
management_port=${BENCH_MANAGEMENT_PORT:-23884}
http_port=${BENCH_HTTP_PORT:-5640}
sides=${BENCH_PINNED_SIDES:-"ours twin"}
[ "$(nproc)" -ge 2 ] || { echo "needs two cores" >&2; exit 2; }

find_or_build "$sides"
mkdir -p "$out"
# The node starts with both cores (its schedulers are counted then), then all its threads move to
# core 0; this shell moves to core 1, and everything it starts from here inherits that.
start_private_broker pinned-broker
taskset -a -p -c 0 "$broker_pid" > /dev/null
taskset -p -c 1 $$ > /dev/null

results="$work/pinned_max.jsonl"
: > "$results"
for side in $sides; do
    vhost="pinned-$side-$$"
    start_side "$side" "$vhost" "$http_port"
    start=$ours_start
    [ "$side" = twin ] && start=$twin_start
    # A warm-up the search does not see: from a cold start the twin's JIT and thread pool fall behind
    # at rates they keep up with a minute later, and the search never returns to a rate it lost.
    "$bench_bin" load --http-port "$http_port" --amqp-port "$amqp_port" --vhost "$vhost" --rate 100 \
        --seconds 20 --connections "$connections" --failure-share "$failure_share" > /dev/null
    echo "== $side, broker on core 0 and the rest on core 1: finding the maximum from $start orders/s" >&2
    max_json=$("$bench_bin" max --http-port "$http_port" --amqp-port "$amqp_port" --vhost "$vhost" \
        --rate "$start" --step-factor 1.15 --max-steps 30 --refine-steps 2 --decision-runs "$decision_runs" \
        --seconds "$seconds" --connections "$connections" --failure-share "$failure_share")
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(kind='pinned-max', side=sys.argv[2]); print(json.dumps(d))" \
        "$max_json" "$side" >> "$results"
    stop_side "$vhost"
done
cp "$results" "$out/pinned_max.jsonl"
python3 - "$results" <<'PY'
import json, sys
rows = {r["side"]: r["maximum_rate"] for r in map(json.loads, open(sys.argv[1]))}
print("broker on a core of its own: " + ", ".join(f"{side} {rate:.0f} orders/s" for side, rate in rows.items()))
if rows.get("twin") and "ours" in rows:
    print(f"ours / twin: {rows.get('ours', 0) / rows['twin']:.2f}")
PY
