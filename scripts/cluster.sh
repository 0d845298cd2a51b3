#!/usr/bin/env bash
# A private 3-node RabbitMQ cluster on this machine, from Debian's rabbitmq-server: three nodes made
# by scripts/broker.sh (own names, ports and data directories, one shared Erlang cookie), joined into
# one cluster. Node N (1-3) listens for AMQP on BASE_PORT + 10*(N-1), for Erlang distribution one
# port above, and for the management API two above.
#
#   scripts/cluster.sh start DIR BASE_PORT   # a fresh cluster; returns once all three nodes run in it
#   scripts/cluster.sh stop  DIR
#   scripts/cluster.sh kill  DIR N           # kill -9 of node N, as a crash
#   scripts/cluster.sh revive DIR N          # starts node N again; it rejoins the cluster
#   scripts/cluster.sh ports DIR             # "AMQP MANAGEMENT" of each node, a line each
set -euo pipefail
cd "$(dirname "$0")/.."

command=${1:?usage: cluster.sh start|stop|kill|revive|ports DIR [BASE_PORT | N]}
dir=$(mkdir -p "${2:?directory required}" && cd "$2" && pwd)
export SAGA_BROKER_HOME="$dir/home"  # the cookie all three nodes share

base_port() {
    cat "$dir/base_port" 2> /dev/null || { echo "cluster.sh: no cluster in $dir" >&2; exit 1; }
}
amqp_port() { echo $(($(base_port) + 10 * ($1 - 1))); }
node_dir() { echo "$dir/node$1"; }
start_node() {
    local amqp
    amqp=$(amqp_port "$1")
    scripts/broker.sh start "$(node_dir "$1")" "$amqp" $((amqp + 2))
}

case "$command" in
start)
    # A fresh cluster each time: nodes left running in DIR are stopped and their data removed.
    if [ -f "$dir/base_port" ]; then bash scripts/cluster.sh stop "$dir"; fi
    rm -rf "$dir"/node1 "$dir"/node2 "$dir"/node3 "$SAGA_BROKER_HOME"
    echo "${3:?base port required}" > "$dir/base_port"
    mkdir -p "$SAGA_BROKER_HOME"
    start_node 1
    seed="saga-$(amqp_port 1)@localhost"
    for n in 2 3; do
        start_node "$n"
        scripts/broker.sh join "$(node_dir "$n")" "$seed"
    done
    # All three running, as the cluster itself reports.
    running=$(scripts/broker.sh diagnostics "$(node_dir 1)" cluster_status --formatter json |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
    [ "$running" = 3 ] || { echo "cluster.sh: $running of 3 nodes running" >&2; exit 1; }
    echo "cluster of 3 nodes ready: amqp ports $(amqp_port 1), $(amqp_port 2), $(amqp_port 3)"
    ;;
stop)
    [ -f "$dir/base_port" ] || exit 0
    for n in 3 2 1; do scripts/broker.sh stop "$(node_dir "$n")" || true; done
    ;;
kill)
    scripts/broker.sh kill "$(node_dir "${3:?node number required}")"
    ;;
revive)
    start_node "${3:?node number required}"
    ;;
ports)
    for n in 1 2 3; do echo "$(amqp_port "$n") $(($(amqp_port "$n") + 2))"; done
    ;;
*)
    echo "usage: cluster.sh start|stop|kill|revive|ports DIR [BASE_PORT | N]" >&2
    exit 2
    ;;
esac
