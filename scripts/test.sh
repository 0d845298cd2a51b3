#!/usr/bin/env bash
# The test command: installs dependencies, builds with warnings as errors, starts a private RabbitMQ
# node (its own node name, ports and data directory under the build tree), runs every test with
# ctest (the broker tests included; the cluster tests start and stop a private 3-node cluster of their
# own, scripts/cluster.sh, as a ctest fixture), and stops the broker whatever happens. Then it does it all again
# in a second tree built with AddressSanitizer and UndefinedBehaviorSanitizer at -O1 (about 15 minutes
# more on 2 cores; SAGA_SKIP_SANITIZERS=1 leaves that pass out of a quick local run, never out of CI).
# With dotnet on the PATH (always in CI) the first pass also builds the MassTransit twin and runs its
# tests. The sanitizer pass leaves out the suites that test integration rather than memory: the twin's
# (label twin) and the benchmark's smoke run (label bench); every other suite runs in both passes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Below Linux's ephemeral range (32768-60999): a port in it can be held by an outgoing connection of an
# earlier test (or its TIME_WAIT), and the node's listeners then fail to bind when it (re)starts.
amqp_port=${SAGA_TEST_AMQP_PORT:-22672}
management_port=${SAGA_TEST_MANAGEMENT_PORT:-22674}
broker_dir=""


# The MassTransit twin's tests (Tests/MassTransitTwin) need the .NET SDK: in CI a missing SDK fails the
# configure step (and a failed NuGet restore the build); elsewhere they are left out and said to be.
twin_options=()
if [ -n "${CI:-}" ]; then
    twin_options=(-DSAGA_REQUIRE_TWIN=ON)
fi
twin_note() {
    command -v dotnet > /dev/null ||
        echo "MassTransit twin tests: NOT RUN (dotnet is not on the PATH; install the .NET 10 SDK to run them)" >&2
}
trap '[ -z "$broker_dir" ] || scripts/broker.sh stop "$broker_dir" || true; twin_note' EXIT

# Builds the tree, starts a fresh node under it, runs ctest, stops the node.
# Usage: run_suite BUILD_DIR "CTEST_ARGS" [CMAKE_ARGS...]
run_suite() {
    local build=$1
    local ctest_args=$2
    shift 2
    scripts/build.sh "$build" -DSAGA_WARNINGS_AS_ERRORS=ON -DSAGA_BUILD_TESTS=ON "${twin_options[@]}" "$@"
    broker_dir="$PWD/$build/broker"
    rm -rf "$broker_dir"
    scripts/broker.sh start "$broker_dir" "$amqp_port" "$management_port"
    local status=0
    SAGA_TEST_AMQP_PORT=$amqp_port SAGA_TEST_MANAGEMENT_PORT=$management_port SAGA_BROKER_DIR=$broker_dir \
        SAGA_BIN_DIR="$PWD/$build" ctest --test-dir "$build" --output-on-failure -j 2 --timeout 300 $ctest_args || status=$?
    if [ "$status" -ne 0 ]; then
        # What the broker logged as errors, but for the channel errors tests provoke on purpose: a
        # failure that comes from inside the broker (a queue process that crashed) shows only here.
        echo "== the broker's errors (the last 150 lines), from $broker_dir/log" >&2
        grep -h '\[error\]' "$broker_dir"/log/*.log |
            grep -v -E 'Channel error on connection|caused a channel exception' | tail -n 150 >&2 || true
        exit "$status"
    fi
    scripts/broker.sh stop "$broker_dir"
    broker_dir=""
}

run_suite build-test ""
if [ -n "${CI:-}" ] || [ -z "${SAGA_SKIP_SANITIZERS:-}" ]; then
    echo "== the same tests built with -fsanitize=address,undefined" >&2
    # -O1 with line tables only: half the compile time of -O2 -g under the sanitizers, and the reports
    # still name file and line.
    run_suite build-asan "-LE twin|bench" -DSAGA_SANITIZE=ON -DSAGA_BUILD_TWIN=OFF -DSAGA_BUILD_BENCH=OFF \
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
fi
