#!/usr/bin/env bash
# The benchmark: builds a Release tree, starts a private RabbitMQ node, and for each durability mode
# (Database.Synchronous Normal and Full) measures the broker's own ceiling (SagaBench ceiling) and its
# latency at half that rate (SagaBench chain), then runs the three services under open-loop loads at
# fractions of that ceiling (SagaBench load). CPU seconds and peak RSS per process come from /proc.
# Writes bench/out/report.json, report.md and latency.png.
# Then it runs the MassTransit twin (Tests/MassTransitTwin) on the same broker under the same load
# generator: its highest sustained rate, and both systems at half the lower of the two maxima, with the
# CPU per order of every process and the peak RSS of every service (BENCH_TWIN=no leaves it out).
# Last, ours with metrics recorded and with Metrics.Enabled false, on fresh processes each: the highest
# sustained rate and a fixed step at half of it, run by run alternating, to show what recording costs
# (BENCH_METRICS_COST=no leaves it out).
#   bash bench/run.sh            the full run (50-75 minutes)
#   bash bench/run.sh --smoke    a few seconds at a low rate (run by the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

smoke=no
[ "${1:-}" = "--smoke" ] && smoke=yes
seconds=${BENCH_SECONDS:-15}
fractions=${BENCH_FRACTIONS-"0.25 0.5 0.75"}  # "" for none
# The services get the in-flight allowance the ceiling's stages have (prefetch) and enough HTTP
# connections that the client side is not what limits them: an order waits for an idle connection,
# so 64 of them turned the open loop into a closed one at about 2,400/s as soon as answers took
# longer than 27 ms; 256 allow 107 ms.
prefetch=${BENCH_PREFETCH:-256}
connections=${BENCH_CONNECTIONS:-256}
find_max=${BENCH_FIND_MAX:-yes}
embedded=${BENCH_EMBEDDED:-yes}
max_steps=30; max_start=0.3; embedded_rate=500; refine_steps=2
# One 15 s run of the ceiling, or one run's verdict on a rate, is a draw on a shared machine (the
# ceiling measured 2,576 and 2,865 chains/s back to back): the ceiling is the median of this many runs,
# and whether the system kept up with a rate is the majority of up to this many runs.
ceiling_runs=${BENCH_CEILING_RUNS:-3}
decision_runs=${BENCH_DECISION_RUNS:-3}
# No leak: with Normal, one long run at half the ceiling (0 skips it), each service's resident set
# sampled every second; the figure at the first fifth (minute 1 of 5) and at the end must agree within 10%.
soak_seconds=${BENCH_SOAK_SECONDS:-300}
# Each fixed step runs this many times and the report gives the median: on a shared machine one 15 s
# run's latency can differ from the next one's by half.
repeats=${BENCH_REPEATS:-3}
# The order mix: 0 = every order succeeds; 0.1 = 10% out of stock and 10% declined payments.
failure_share=${BENCH_FAILURE_SHARE:-0}
modes=${BENCH_MODES:-"Normal Full"}
build=${BENCH_BUILD:-build-bench}
out=${BENCH_OUT:-bench/out}
# Below the ephemeral range (see scripts/test.sh): the smoke run starts its node after thousands of
# test connections, one of which may hold a port in that range.
amqp_port=${BENCH_AMQP_PORT:-23672}
management_port=${BENCH_MANAGEMENT_PORT:-23674}
http_port=${BENCH_HTTP_PORT:-5600}
twin=${BENCH_TWIN:-yes}
twin_http_port=${BENCH_TWIN_HTTP_PORT:-5610}
twin_start=${BENCH_TWIN_START:-0.1}  # the twin's find-the-maximum starts at this fraction of the Normal ceiling
metrics_cost=${BENCH_METRICS_COST:-yes}
side_metrics=true  # Metrics__Enabled of our services started by start_side
if [ $smoke = yes ]; then
    # Every mode of the tool once, briefly: a fixed step, two find-the-maximum steps, two embedded steps.
    seconds=2; fractions="0.1"; modes="Normal"; out=${BENCH_OUT:-$build/smoke}
    max_steps=2; max_start=0.05; embedded_rate=50; failure_share=${BENCH_FAILURE_SHARE:-0.1}; refine_steps=1
    repeats=1; ceiling_runs=2; decision_runs=3; soak_seconds=5
fi

if [ -z "${BENCH_SKIP_SETUP:-}" ]; then
    scripts/install-deps.sh
    command -v gnuplot > /dev/null && command -v python3 > /dev/null || {
        [ "$(id -u)" -eq 0 ] && sudo="" || sudo=sudo
        $sudo apt-get install -y -q --no-install-recommends gnuplot-nox python3
    }
    scripts/build.sh "$build" -DCMAKE_BUILD_TYPE=Release -DSAGA_BUILD_TESTS=OFF
fi
case "$build" in /*) build_dir=$build ;; *) build_dir="$root/$build" ;; esac
twin_bin="$build_dir/twin/bin/Twin/release/MassTransitTwin"
if [ "$twin" = yes ] && [ -z "${BENCH_SKIP_SETUP:-}" ]; then
    if command -v dotnet > /dev/null; then
        dotnet build Tests/MassTransitTwin/Twin/Twin.csproj -c Release --artifacts-path "$build_dir/twin" -nologo -v quiet
    else
        echo "== the MassTransit twin is not measured: dotnet is not on the PATH" >&2
        twin=no
    fi
fi
if [ "$twin" = yes ] && [ ! -x "$twin_bin" ]; then
    echo "== the MassTransit twin is not measured: it is not built at $twin_bin" >&2
    twin=no
fi
bench_bin="$build_dir/bench/SagaBench"
mkdir -p "$out"
# start_private_broker, api, cpu_ticks, start_side, measure_side_step, ...: shared with bench/census.sh.
source bench/lib.sh
start_private_broker bench-broker

# SagaBench max against the order service on port $1 in vhost $2, from $3 orders/s up.
find_max() {
    "$bench_bin" max --http-port "$1" --amqp-port "$amqp_port" --vhost "$2" \
        --rate "$3" --step-factor 1.15 --max-steps "$max_steps" --refine-steps "$refine_steps" \
        --decision-runs "$decision_runs" --seconds "$seconds" \
        --connections "$connections" --failure-share "$failure_share"
}

results="$work/results.jsonl"
: > "$results"
for sync in $modes; do
    vhost="bench-$sync-$$"
    api -X PUT "http://127.0.0.1:$management_port/api/vhosts/$vhost" > /dev/null
    api -X PUT "http://127.0.0.1:$management_port/api/permissions/$vhost/guest" -d '{"configure":".*","write":".*","read":".*"}' > /dev/null
    ceiling_jsons=()
    for run in $(seq 1 "$ceiling_runs"); do
        if [ $smoke = yes ] && [ "$run" -gt 1 ]; then
            # A chain an earlier run left behind, waiting for the generator: the ceiling must skip it.
            api -X POST "http://127.0.0.1:$management_port/api/exchanges/$vhost/chain-6/publish" \
                -d '{"properties":{"message_id":"left-behind","headers":{"hop":6}},"routing_key":"","payload":"x","payload_encoding":"string"}' \
                | grep -q '"routed":true'
        fi
        echo "== $sync: measuring the broker's ceiling ($seconds s), run $run of $ceiling_runs" >&2
        ceiling_jsons+=("$("$bench_bin" ceiling --amqp-port "$amqp_port" --vhost "$vhost" --seconds "$seconds" \
                          --synchronous "$sync" --database "$work/ceiling-$sync.db" --message-size 1100)")
        echo "${ceiling_jsons[-1]}" >&2
    done
    # The median run, with every run's rate beside it.
    ceiling_json=$(python3 - "${ceiling_jsons[@]}" <<'PY'
import json, sys
runs = sorted((json.loads(a) for a in sys.argv[1:]), key=lambda r: r["chains_per_second"])
print(json.dumps(dict(runs[len(runs) // 2], kind="ceiling", runs=[r["chains_per_second"] for r in runs])))
PY
)
    echo "$ceiling_json" >> "$results"
    ceiling=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['chains_per_second'])" "$ceiling_json")
    # The broker's own latency at half that rate: the floor under the system's latency at that load.
    half_rate=$(python3 -c "print(max(1.0, round($ceiling * 0.5, 1)))")
    echo "== $sync: the chain's latency, open loop at $half_rate chains/s ($seconds s)" >&2
    chain_json=$("$bench_bin" chain --amqp-port "$amqp_port" --vhost "$vhost" --seconds "$seconds" --rate "$half_rate" \
                 --synchronous "$sync" --database "$work/chain-$sync.db" --message-size 1100)
    echo "$chain_json" >&2
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(kind='chain', ceiling=float(sys.argv[2])); print(json.dumps(d))" \
        "$chain_json" "$ceiling" >> "$results"

    # The services, on RabbitMQ, in this vhost.
    export RabbitMQ__Host=127.0.0.1 RabbitMQ__Port=$amqp_port RabbitMQ__VirtualHost=$vhost Logging__Level=warning
    export Database__Synchronous=$sync Saga__TimeoutMs=600000 Endpoint__PrefetchCount=$prefetch
    export Admin__Port=0  # the workers' health listeners on free ports: nothing here reads them
    service_pids=()
    for service in InventoryService PaymentService OrderService; do
        Database__Path="$work/$sync-$service.db" Http__Port=$http_port \
            "$build_dir/$service/$service" --config "appsettings/$service.json" > "$work/$sync-$service.log" 2>&1 &
        service_pids+=($!)
        pids+=($!)
    done
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$http_port/health" > /dev/null 2>&1 && break; sleep 0.1; done

    for fraction in $fractions; do
        for repeat in $(seq 1 "$repeats"); do
            rate=$(python3 -c "print(max(1.0, round($ceiling * $fraction, 1)))")
            echo "== $sync: offered $rate orders/s ($fraction of the ceiling) for $seconds s, run $repeat of $repeats" >&2
            declare -A before=()
            for pid in "$broker_pid" "${service_pids[@]}"; do before[$pid]=$(cpu_ticks "$pid"); done
            load_json=$("$bench_bin" load --http-port "$http_port" --amqp-port "$amqp_port" \
                        --vhost "$vhost" --rate "$rate" --seconds "$seconds" --connections "$connections" \
                        --failure-share "$failure_share")
            echo "$load_json" >&2
            fields=$(python3 -c "import json,sys; l=json.loads(sys.argv[1]); c=float(sys.argv[2]); print(json.dumps(dict(kind='step', synchronous=sys.argv[3], fraction=float(sys.argv[4]), repeat=int(sys.argv[5]), ceiling=c, ratio_to_ceiling=l['throughput']/c)))" \
                     "$load_json" "$ceiling" "$sync" "$fraction" "$repeat")
            python3 bench/step_row.py "$load_json" "$fields" "$ticks_per_second" \
                "broker=$broker_pid:${before[$broker_pid]}:$(cpu_ticks "$broker_pid"):0" \
                "InventoryService=${service_pids[0]}:${before[${service_pids[0]}]}:$(cpu_ticks "${service_pids[0]}"):$(peak_rss_kb "${service_pids[0]}")" \
                "PaymentService=${service_pids[1]}:${before[${service_pids[1]}]}:$(cpu_ticks "${service_pids[1]}"):$(peak_rss_kb "${service_pids[1]}")" \
                "OrderService=${service_pids[2]}:${before[${service_pids[2]}]}:$(cpu_ticks "${service_pids[2]}"):$(peak_rss_kb "${service_pids[2]}")" \
                >> "$results"
        done
    done
    if [ "$sync" = Normal ] && [ "$soak_seconds" -gt 0 ]; then
        echo "== $sync: $soak_seconds s at $half_rate orders/s (half the ceiling), each service's RSS sampled every second" >&2
        python3 - "$work/rss.jsonl" "InventoryService=${service_pids[0]}" "PaymentService=${service_pids[1]}" \
            "OrderService=${service_pids[2]}" <<'PY' &
import json, sys, time
out, services = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
start = time.monotonic()
with open(out, "w") as f:
    while True:
        sample = {"t": round(time.monotonic() - start, 1)}
        for name, pid in services.items():
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    sample[name] = int(line.split()[1]) / 1024
        f.write(json.dumps(sample) + "\n")
        f.flush()
        time.sleep(1)
PY
        sampler_pid=$!
        pids+=($sampler_pid)
        soak_json=$("$bench_bin" load --http-port "$http_port" --amqp-port "$amqp_port" --vhost "$vhost" \
                    --rate "$half_rate" --seconds "$soak_seconds" --connections "$connections" --failure-share "$failure_share")
        kill "$sampler_pid"; wait "$sampler_pid" 2> /dev/null || true
        echo "$soak_json" >&2
        python3 - "$soak_json" "$work/rss.jsonl" "$sync" "$ceiling" >> "$results" <<'PY'
import json, sys
load, samples = json.loads(sys.argv[1]), [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
print(json.dumps(dict(load, kind="soak", synchronous=sys.argv[3], ceiling=float(sys.argv[4]), rss_samples=samples)))
PY
    fi
    [ "$sync" = Normal ] && normal_ceiling=$ceiling
    if [ "$find_max" = yes ]; then
        start_rate=$(python3 -c "print(round($ceiling * $max_start, 1))")
        echo "== $sync: finding the maximum (steps of +15% from $start_rate orders/s, $seconds s each)" >&2
        max_json=$(find_max "$http_port" "$vhost" "$start_rate")
        python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(kind='max', synchronous=sys.argv[2], ceiling=float(sys.argv[3])); print(json.dumps(d))" \
            "$max_json" "$sync" "$ceiling" >> "$results"
    fi
    for pid in "${service_pids[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
    unset RabbitMQ__Host RabbitMQ__Port RabbitMQ__VirtualHost Logging__Level Database__Synchronous Saga__TimeoutMs \
        Endpoint__PrefetchCount
    api -X DELETE "http://127.0.0.1:$management_port/api/vhosts/$vhost" > /dev/null || true
done

if [ "$twin" = yes ] && [ -n "${normal_ceiling:-}" ]; then
    our_max=$(python3 -c "import json,sys; print(next((r['maximum_rate'] for r in map(json.loads, open(sys.argv[1])) if r.get('kind') == 'max' and r['synchronous'] == 'Normal'), 0))" "$results")
    twin_vhost="bench-twin-$$"
    start_side twin "$twin_vhost" "$twin_http_port"
    start_rate=$(python3 -c "print(max(10.0, round($normal_ceiling * $twin_start, 1)))")
    echo "== MassTransit twin: finding the maximum (steps of +15% from $start_rate orders/s, $seconds s each)" >&2
    max_json=$(find_max "$twin_http_port" "$twin_vhost" "$start_rate")
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(kind='twin-max', peak_rss_mb=dict(zip(['InventoryService','PaymentService','OrderService'], [int(k)/1024 for k in sys.argv[2:]]))); print(json.dumps(d))" \
        "$max_json" "$(peak_rss_kb "${side_pids[0]}")" "$(peak_rss_kb "${side_pids[1]}")" "$(peak_rss_kb "${side_pids[2]}")" >> "$results"
    stop_side "$twin_vhost"
    twin_max=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['maximum_rate'])" "$max_json")
    # Both systems at one rate they both sustain: half the lower maximum, each on fresh processes.
    pair_rate=$(python3 -c "print(max(1.0, round(0.5 * min($our_max, $twin_max) if min($our_max, $twin_max) > 0 else 1.0, 1)))")
    for side in ours twin; do
        pair_vhost="bench-pair-$side-$$"
        start_side "$side" "$pair_vhost" "$twin_http_port"
        for repeat in $(seq 1 "$repeats"); do
            echo "== $side beside the other: offered $pair_rate orders/s for $seconds s, run $repeat of $repeats" >&2
            measure_side_step "$twin_http_port" "$pair_vhost" "$pair_rate" \
                "{\"kind\": \"pair\", \"side\": \"$side\", \"repeat\": $repeat, \"our_max\": $our_max, \"twin_max\": $twin_max}"
        done
        stop_side "$pair_vhost"
    done
fi

if [ "$metrics_cost" = yes ] && [ -n "${normal_ceiling:-}" ]; then
    # What recording metrics costs: each setting's highest rate, then a fixed step at half the lower of
    # the two, the settings alternating run by run so that a drift of the machine falls on both.
    metrics_port=$((twin_http_port + 1))
    declare -A metrics_max
    for enabled in true false; do
        side_metrics=$enabled
        metrics_vhost="bench-metrics-$enabled-$$"
        start_side ours "$metrics_vhost" "$metrics_port"
        start_rate=$(python3 -c "print(round($normal_ceiling * $max_start, 1))")
        echo "== ours, Metrics.Enabled=$enabled: finding the maximum (steps of +15% from $start_rate orders/s)" >&2
        max_json=$(find_max "$metrics_port" "$metrics_vhost" "$start_rate")
        python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(kind='metrics-max', metrics=sys.argv[2] == 'true'); print(json.dumps(d))" \
            "$max_json" "$enabled" >> "$results"
        metrics_max[$enabled]=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['maximum_rate'])" "$max_json")
        stop_side "$metrics_vhost"
    done
    metrics_rate=$(python3 -c "print(max(1.0, round(0.5 * min(${metrics_max[true]}, ${metrics_max[false]}), 1)))")
    for repeat in $(seq 1 "$repeats"); do
        for enabled in true false; do
            side_metrics=$enabled
            metrics_vhost="bench-metrics-step-$enabled-$repeat-$$"
            start_side ours "$metrics_vhost" "$metrics_port"
            echo "== ours, Metrics.Enabled=$enabled: offered $metrics_rate orders/s for $seconds s, run $repeat of $repeats" >&2
            measure_side_step "$metrics_port" "$metrics_vhost" "$metrics_rate" \
                "{\"kind\": \"metrics-step\", \"metrics\": $enabled, \"repeat\": $repeat}"
            stop_side "$metrics_vhost"
        done
    done
    side_metrics=true
fi

if [ "$embedded" = yes ]; then
    # The same services and load on the in-memory bus inside SagaBench: what the broker costs.
    echo "== embedded (in-memory bus, synchronous=Normal): finding the maximum" >&2
    embedded_json=$(Logging__Level=warning Endpoint__PrefetchCount=$prefetch \
        "$bench_bin" max --embedded appsettings --http-port "$http_port" --rate "$embedded_rate" --step-factor 1.15 \
        --max-steps "$max_steps" --refine-steps "$refine_steps" --seconds "$seconds" --connections "$connections" --failure-share "$failure_share")
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(kind='embedded', synchronous='Normal'); print(json.dumps(d))" \
        "$embedded_json" >> "$results"
fi

settings="prefetch $prefetch, $connections HTTP connections, $seconds s per step, $repeats runs of each fixed step"
[ "$ceiling_runs" -gt 1 ] && settings+=", the ceiling the median of $ceiling_runs runs"
[ "$decision_runs" -gt 1 ] && settings+=", each find-the-maximum rate decided by the majority of up to $decision_runs runs"
settings+=", failure share $failure_share"
python3 bench/report.py "$results" "$out" "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)" "$settings"
echo "report: $out/report.md" >&2
