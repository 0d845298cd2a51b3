#!/usr/bin/env bash
# Starts or stops a private RabbitMQ node: its own node name, ports, Erlang cookie and data directory,
# so it never collides with another broker on the machine. The management plugin is on.
#
#   scripts/broker.sh start DIR AMQP_PORT MANAGEMENT_PORT   # returns once the node answers
#   scripts/broker.sh stop  DIR
#
# The broker tests also use it to hurt a running node:
#   scripts/broker.sh restart-app   DIR [SECONDS_DOWN]
#   scripts/broker.sh memory-alarm  DIR on|off
#   scripts/broker.sh quorum-member DIR stop|start VHOST QUEUE
# and the benchmarks to look inside it:
#   scripts/broker.sh diagnostics   DIR COMMAND [ARGS...]   # rabbitmq-diagnostics on this node
# and scripts/cluster.sh to make three nodes one cluster and to kill one:
#   scripts/broker.sh join          DIR SEED_NODE   # this node joins SEED_NODE's cluster
#   scripts/broker.sh kill          DIR             # kill -9 of the node's Erlang VM, as a crash
# Nodes of one cluster share an Erlang cookie: SAGA_BROKER_HOME names the directory that holds it
# (default DIR/home, a cookie of the node's own).
set -euo pipefail

command=${1:?usage: broker.sh start|stop DIR [AMQP_PORT MANAGEMENT_PORT]}
dir=$(mkdir -p "${2:?directory required}" && cd "$2" && pwd)
bin=/usr/lib/rabbitmq/bin

node_env() {
    local amqp_port=$1 management_port=$2
    export HOME="${SAGA_BROKER_HOME:-$dir/home}"  # a private Erlang cookie, or the cluster's
    export RABBITMQ_NODENAME="saga-$amqp_port@localhost"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$amqp_port"
    export RABBITMQ_DIST_PORT=$((amqp_port + 1))
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"  # rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    # Erlang's schedulers spin for a while before they sleep. On a machine whose few cores the broker
    # shares with the services and the load, that spinning takes CPU the others need (the system's
    # highest sustained rate on 2 cores went from about 1,230 to 1,850 orders/s without it), so the
    # runtime's +sbwt flags turn it off. Set the variable (even to "") to override.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS-+sbwt none +sbwtdcpu none +sbwtdio none}"
    mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    echo "[rabbitmq_management]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
    echo "[]." > "$RABBITMQ_ADVANCED_CONFIG_FILE"
    cat > "$dir/rabbitmq.conf" <<CONF
management.tcp.port = $management_port
management.tcp.ip = 127.0.0.1
loopback_users = none
collect_statistics_interval = 1000
log.console = false
log.file.level = warning
CONF
    echo "$amqp_port $management_port" > "$dir/ports"
}

case "$command" in
start)
    amqp_port=${3:?AMQP port required}
    management_port=${4:?management port required}
    node_env "$amqp_port" "$management_port"
    if "$bin/rabbitmqctl" -q status > /dev/null 2>&1; then
        echo "broker $RABBITMQ_NODENAME already running"
        exit 0
    fi
    nohup "$bin/rabbitmq-server" > "$dir/server.out" 2>&1 &
    echo $! > "$dir/server.shell.pid"
    # Wait until the node has booted (await_startup fails at once while the node is not reachable yet),
    # then until the management API answers; 120 s at most.
    deadline=$((SECONDS + 120))
    until "$bin/rabbitmqctl" -q await_startup --timeout 10 > /dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$dir/server.shell.pid")" 2> /dev/null; then
            echo "broker did not start; its output:" >&2
            tail -n 30 "$dir/server.out" "$RABBITMQ_LOG_BASE"/*.log >&2 || true
            exit 1
        fi
        sleep 1
    done
    while [ $SECONDS -lt $deadline ]; do
        if curl -fsS -u guest:guest "http://127.0.0.1:$management_port/api/overview" > /dev/null 2>&1; then
            echo "broker $RABBITMQ_NODENAME ready: amqp://127.0.0.1:$amqp_port, management http://127.0.0.1:$management_port"
            exit 0
        fi
        sleep 0.5
    done
    echo "the management API did not answer within 120 s" >&2
    exit 1
    ;;
stop)
    read -r amqp_port management_port < "$dir/ports" 2> /dev/null || exit 0
    node_env "$amqp_port" "$management_port"
    # `rabbitmqctl stop` with the pid file waits until the Erlang VM has exited; without a running VM it
    # would wait for the file to appear, so a node that is not running (killed) is not asked.
    if [ -f "$RABBITMQ_PID_FILE" ] && kill -0 "$(cat "$RABBITMQ_PID_FILE")" 2> /dev/null; then
        timeout 60 "$bin/rabbitmqctl" -q stop "$RABBITMQ_PID_FILE" > /dev/null 2>&1 || true
    elif timeout 20 "$bin/rabbitmqctl" -q status > /dev/null 2>&1; then
        # Running without its pid file (a second start that failed removed it on exit).
        timeout 60 "$bin/rabbitmqctl" -q stop > /dev/null 2>&1 || true
    fi
    if [ -f "$dir/server.shell.pid" ]; then
        pid=$(cat "$dir/server.shell.pid")
        kill "$pid" 2> /dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
        rm -f "$dir/server.shell.pid"
    fi
    echo "broker $RABBITMQ_NODENAME stopped"
    ;;
restart-app)
    # Restarts the RabbitMQ application inside the running node: every connection drops, durable
    # queues and persistent messages stay.
    read -r amqp_port management_port < "$dir/ports"
    node_env "$amqp_port" "$management_port"
    "$bin/rabbitmqctl" -q stop_app > /dev/null
    sleep "${3:-1}"
    "$bin/rabbitmqctl" -q start_app > /dev/null
    "$bin/rabbitmqctl" -q await_startup > /dev/null
    ;;
memory-alarm)
    # on: a memory high watermark no node can stay under, so the broker raises its memory alarm and
    # blocks every publishing connection; off: the default watermark again, and the alarm clears.
    read -r amqp_port management_port < "$dir/ports"
    node_env "$amqp_port" "$management_port"
    case "${3:?on or off required}" in
    on) "$bin/rabbitmqctl" -q set_vm_memory_high_watermark 0.0000001 > /dev/null ;;
    off) "$bin/rabbitmqctl" -q set_vm_memory_high_watermark 0.4 > /dev/null ;;
    *) echo "memory-alarm: on or off" >&2; exit 2 ;;
    esac
    ;;
quorum-member)
    # stop: stops the Ra server that holds a quorum queue on this node, as a crash would leave it, so
    # the queue refuses its clients ("noproc") until start brings it back with its log.
    read -r amqp_port management_port < "$dir/ports"
    node_env "$amqp_port" "$management_port"
    action=${3:?stop or start required}
    vhost=${4:?vhost required}
    queue=${5:?queue required}
    case "$action" in
    stop) call="ra:stop_server(quorum_queues, Member)" ;;
    start) call="ra:restart_server(quorum_queues, Member)" ;;
    *) echo "quorum-member: stop or start" >&2; exit 2 ;;
    esac
    result=$("$bin/rabbitmqctl" -q eval "
        {ok, Queue} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"$vhost\">>, queue, <<\"$queue\">>)),
        Member = amqqueue:get_pid(Queue),
        $call.")
    [ "$result" = ok ] || { echo "quorum-member $action $vhost/$queue: $result" >&2; exit 1; }
    ;;
join)
    # Joins the cluster of SEED_NODE (a node name, saga-PORT@localhost): the node forgets its own data.
    read -r amqp_port management_port < "$dir/ports"
    node_env "$amqp_port" "$management_port"
    seed=${3:?seed node name required}
    "$bin/rabbitmqctl" -q stop_app > /dev/null
    "$bin/rabbitmqctl" -q join_cluster "$seed" > /dev/null
    "$bin/rabbitmqctl" -q start_app > /dev/null
    "$bin/rabbitmqctl" -q await_startup > /dev/null
    ;;
kill)
    # The node's Erlang VM dies at once, as in a crash or an OOM kill: no connection is closed cleanly.
    # `start` with the same DIR brings it back into its cluster.
    pid=$(cat "$dir/rabbitmq.pid" 2> /dev/null || true)
    [ -n "$pid" ] || { echo "kill: no pid file in $dir" >&2; exit 1; }
    kill -9 "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    ! kill -0 "$pid" 2> /dev/null || { echo "kill: $pid still runs" >&2; exit 1; }
    rm -f "$dir/rabbitmq.pid" "$dir/server.shell.pid"
    ;;
diagnostics)
    # The broker's own diagnostics on this node: broker.sh diagnostics DIR COMMAND [ARGS...]
    read -r amqp_port management_port < "$dir/ports"
    node_env "$amqp_port" "$management_port"
    shift 2
    "$bin/rabbitmq-diagnostics" -q "$@"
    ;;
*)
    echo "usage: broker.sh start|stop|restart-app|memory-alarm|quorum-member|join|kill|diagnostics DIR" \
        "[AMQP_PORT MANAGEMENT_PORT | SECONDS | on|off | stop|start VHOST QUEUE | SEED_NODE | COMMAND ARGS...]" >&2
    exit 2
    ;;
esac
