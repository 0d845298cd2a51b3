#!/usr/bin/env bash
# The test command: installs dependencies, builds with warnings as errors, starts a private RabbitMQ
# node (its own node name, ports and data directory under the build tree), runs every test with
# ctest (the broker tests included), and stops the broker whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build=build-test
scripts/build.sh "$build" -DSAGA_WARNINGS_AS_ERRORS=ON -DSAGA_BUILD_TESTS=ON

broker_dir="$PWD/$build/broker"
# Below Linux's ephemeral range (32768-60999): a port in it can be held by an outgoing connection of an
# earlier test (or its TIME_WAIT), and the node's listeners then fail to bind when it (re)starts.
amqp_port=${SAGA_TEST_AMQP_PORT:-22672}
management_port=${SAGA_TEST_MANAGEMENT_PORT:-22674}
trap 'scripts/broker.sh stop "$broker_dir" || true' EXIT
scripts/broker.sh start "$broker_dir" "$amqp_port" "$management_port"

export SAGA_TEST_AMQP_PORT=$amqp_port
export SAGA_TEST_MANAGEMENT_PORT=$management_port
export SAGA_BROKER_DIR=$broker_dir
export SAGA_BIN_DIR="$PWD/$build"
ctest --test-dir "$build" --output-on-failure -j 2 --timeout 300
