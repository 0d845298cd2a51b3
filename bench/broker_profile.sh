#!/usr/bin/env bash
# Where the broker's time goes, ours against the MassTransit twin at the same rates, with nothing
# between the services and the broker: for each rate and side, while SagaBench load offers the rate,
# the broker's own microstate accounting (rabbitmq-diagnostics runtime_thread_stats: its schedulers'
# time in Erlang code, port I/O, polling, garbage collection, other, asleep) and, through perf, its
# system calls (reads, writes, polls, futex waits) and context switches. Figures per order finished.
# Uses the Release tree and the twin bench/run.sh builds (builds them when missing); starts its own
# broker node. Writes $out/broker_profile.jsonl, $out/broker_profile.md and, in $out/broker_profile/,
# what the broker's tools printed at each step.
#   bash bench/broker_profile.sh                      rates 200 400 600, 20 s each
#   BENCH_PROFILE_RATES="300" BENCH_SECONDS=10 bash bench/broker_profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source bench/lib.sh
read_common_settings 20

rates=${BENCH_PROFILE_RATES:-"200 400 600"}
amqp_port=${BENCH_AMQP_PORT:-23782}
management_port=${BENCH_MANAGEMENT_PORT:-23784}
http_port=${BENCH_HTTP_PORT:-5630}
sides=${BENCH_PROFILE_SIDES:-"ours twin"}
[ "$seconds" -ge 6 ] || { echo "BENCH_SECONDS must be 6 or more (the samples leave 2 s at each end)" >&2; exit 2; }

command -v perf > /dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }

find_or_build "$sides"
mkdir -p "$out"
start_private_broker profile-broker

# The system calls counted on the broker's threads: how it reads and writes its sockets, how often it
# polls and how often its threads wait for each other.
syscalls="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait poll ppoll futex"
events="task-clock,context-switches"
for call in $syscalls; do events+=",syscalls:sys_enter_$call"; done
sample=$((seconds - 4))

results="$work/broker_profile.jsonl"
: > "$results"
for rate in $rates; do
    for side in $sides; do
        profile_vhost="profile-$side-$$"
        start_side "$side" "$profile_vhost" "$http_port"
        echo "== broker profile: $side at $rate orders/s for $seconds s" >&2
        # Both samples start 2 s into the load and end 2 s before it does.
        (sleep 2 && exec scripts/broker.sh diagnostics "$broker_dir" runtime_thread_stats \
            --sample-interval "$sample" > "$work/msacc.txt" 2>&1) &
        msacc_pid=$!
        (sleep 2 && exec perf stat -x, -e "$events" -p "$broker_pid" -- sleep "$sample" 2> "$work/perf.csv") &
        perf_pid=$!
        steps_before=$(wc -l < "$results")
        measure_side_step "$http_port" "$profile_vhost" "$rate" "{\"kind\": \"profile-step\", \"side\": \"$side\"}"
        [ "$(wc -l < "$results")" -gt "$steps_before" ]
        wait "$msacc_pid" "$perf_pid"
        step_row=$(tail -n 1 "$results")
        sed -i '$ d' "$results"
        python3 bench/profile_row.py "$step_row" "$sample" "$seconds" "$work/msacc.txt" "$work/perf.csv" >> "$results"
        mkdir -p "$work/raw"
        cp "$work/msacc.txt" "$work/raw/$side-$rate-runtime_thread_stats.txt"
        cp "$work/perf.csv" "$work/raw/$side-$rate-perf_stat.csv"
        stop_side "$profile_vhost"
    done
done
cp "$results" "$out/broker_profile.jsonl"
rm -rf "$out/broker_profile"
cp -r "$work/raw" "$out/broker_profile"  # what the broker's tools printed, step by step
python3 bench/profile_report.py "$out/broker_profile.jsonl" > "$out/broker_profile.md"
cat "$out/broker_profile.md"
