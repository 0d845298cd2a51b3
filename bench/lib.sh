# Shell functions the benchmark scripts share: their common settings, finding or building the Release
# tree and the twin, the management API, a process's CPU ticks and peak RSS, starting and stopping one
# side's three services (ours or the MassTransit twin's), measuring one fixed step against them, and
# the private broker node. They read the caller's settings (management_port, amqp_port, build_dir,
# twin_bin, work, bench_bin, prefetch, seconds, connections, failure_share, results, broker_pid, pids);
# side_amqp_port, when set, is where the services connect instead of amqp_port (a proxy in front of the
# broker), and side_metrics is their Metrics.Enabled.
# shellcheck shell=bash

# The settings every step-running script takes from the environment: seconds per step (default $1),
# the services' prefetch, the load's HTTP connections and failure share, the build and output trees.
read_common_settings() {
    seconds=${BENCH_SECONDS:-$1}
    prefetch=${BENCH_PREFETCH:-256}
    connections=${BENCH_CONNECTIONS:-256}
    failure_share=${BENCH_FAILURE_SHARE:-0}
    build=${BENCH_BUILD:-build-bench}
    out=${BENCH_OUT:-bench/out}
}

# Sets build_dir, bench_bin and twin_bin from $build (relative to $root), and builds the Release tree
# when the load generator or a service is missing, and the twin when the sides $1 name it and it is.
find_or_build() {
    case "$build" in /*) build_dir=$build ;; *) build_dir="$root/$build" ;; esac
    twin_bin="$build_dir/twin/bin/Twin/release/MassTransitTwin"
    bench_bin="$build_dir/bench/SagaBench"
    if [ ! -x "$bench_bin" ] || [ ! -x "$build_dir/OrderService/OrderService" ]; then
        scripts/build.sh "$build" -DCMAKE_BUILD_TYPE=Release -DSAGA_BUILD_TESTS=OFF
    fi
    if [[ " $1 " == *" twin "* ]] && [ ! -x "$twin_bin" ]; then
        dotnet build Tests/MassTransitTwin/Twin/Twin.csproj -c Release --artifacts-path "$build_dir/twin" -nologo -v quiet
    fi
}

# Makes the work directory, starts the private broker node in $build_dir/$1 on amqp_port and
# management_port, and has the processes in pids, the node and the work directory stopped and
# removed at exit. Sets work, broker_dir, pids and broker_pid.
start_private_broker() {
    work=$(mktemp -d)
    broker_dir="$build_dir/$1"
    pids=()
    trap stop_private_broker EXIT
    scripts/broker.sh start "$broker_dir" "$amqp_port" "$management_port"
    broker_pid=$(cat "$broker_dir/rabbitmq.pid")
}
stop_private_broker() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
    scripts/broker.sh stop "$broker_dir" > /dev/null || true
    rm -rf "$work"
}

api() { curl -fsS -u guest:guest -H 'content-type: application/json' "$@"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
ticks_per_second=$(getconf CLK_TCK)

# Starts one side's three services (ours or the twin's) on vhost $2 with HTTP on port $3, and waits
# until the order service answers; their pids go to side_pids (inventory, payment, order).
start_side() {
    local side=$1 side_vhost=$2 port=$3 service
    api -X PUT "http://127.0.0.1:$management_port/api/vhosts/$side_vhost" > /dev/null
    api -X PUT "http://127.0.0.1:$management_port/api/permissions/$side_vhost/guest" -d '{"configure":".*","write":".*","read":".*"}' > /dev/null
    side_pids=()
    for service in InventoryService PaymentService OrderService; do
        if [ "$side" = twin ]; then
            local argument=${service%Service}
            RabbitMQ__Host=127.0.0.1 RabbitMQ__Port=${side_amqp_port:-$amqp_port} RabbitMQ__VirtualHost=$side_vhost Http__Port=$port \
                Endpoint__PrefetchCount=$prefetch Logging__Level=Warning \
                "$twin_bin" "${argument,,}" > "$work/$side_vhost-$service.log" 2>&1 &
        else
            RabbitMQ__Host=127.0.0.1 RabbitMQ__Port=${side_amqp_port:-$amqp_port} RabbitMQ__VirtualHost=$side_vhost Http__Port=$port \
                Endpoint__PrefetchCount=$prefetch Logging__Level=warning Database__Synchronous=Normal \
                Saga__TimeoutMs=600000 Database__Path="$work/$side_vhost-$service.db" Metrics__Enabled=${side_metrics:-true} \
                "$build_dir/$service/$service" --config "appsettings/$service.json" > "$work/$side_vhost-$service.log" 2>&1 &
        fi
        side_pids+=($!)
        pids+=($!)
    done
    for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1 && return 0; sleep 0.1; done
    echo "$side's services did not come up; their output:" >&2
    tail -n 20 "$work/$side_vhost"-*.log >&2
    return 1
}
stop_side() {
    local pid
    for pid in "${side_pids[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
    api -X DELETE "http://127.0.0.1:$management_port/api/vhosts/$1" > /dev/null || true
}
side_entries() {  # NAME=PID:BEFORE:AFTER:PEAK for step_row.py, from side_pids and the ticks in side_before
    local i=0 service
    echo "broker=$broker_pid:$broker_before:$(cpu_ticks "$broker_pid"):0"
    for service in InventoryService PaymentService OrderService; do
        echo "$service=${side_pids[$i]}:${side_before[$i]}:$(cpu_ticks "${side_pids[$i]}"):$(peak_rss_kb "${side_pids[$i]}")"
        i=$((i + 1))
    done
}

# One fixed step against the side started last (start_side) on port $1, vhost $2, at $3 orders/s: its
# row, with the CPU of the broker and of each service over the step and the fields of JSON $4, goes
# to the results.
measure_side_step() {
    local port=$1 step_vhost=$2 rate=$3 fields=$4 pid load_json entries
    broker_before=$(cpu_ticks "$broker_pid")
    side_before=()
    for pid in "${side_pids[@]}"; do side_before+=("$(cpu_ticks "$pid")"); done
    load_json=$("$bench_bin" load --http-port "$port" --amqp-port "$amqp_port" --vhost "$step_vhost" \
                --rate "$rate" --seconds "$seconds" --connections "$connections" --failure-share "$failure_share")
    echo "$load_json" >&2
    mapfile -t entries < <(side_entries)
    python3 bench/step_row.py "$load_json" "$fields" "$ticks_per_second" "${entries[@]}" >> "$results"
}
