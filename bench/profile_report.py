"""The broker profile's table in Markdown, from broker_profile.jsonl (bench/broker_profile.sh).
  profile_report.py BROKER_PROFILE_JSONL"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
states = ["emulator", "port", "check_io", "gc", "other", "aux", "busy"]
# The calls the broker makes (others it makes rarely): recvfrom reads its sockets, writev writes them
# (and its files), read and write mostly wake its own threads (the schedulers' wake-up pipe), epoll_wait
# polls and futex waits for or wakes another thread.
calls = ["recvfrom", "writev", "read", "write", "epoll_wait", "futex"]

print("# Where the broker's time goes: ours and the MassTransit twin\n")
print("No proxy: each side's services talk to the broker directly (`bash bench/broker_profile.sh`). "
      "Per order finished, over the middle of each step. Scheduler ms: the broker's schedulers' time "
      "in each microstate (rabbitmq-diagnostics runtime_thread_stats; emulator is Erlang code, port is "
      "socket I/O, check_io is polling, busy is all but sleep); CPU ms and the system calls: perf stat "
      "on every thread of the broker. recvfrom reads a socket, writev writes a socket or a file, read "
      "and write are mostly the broker waking its own scheduler threads, futex one thread waiting for "
      "or waking another.\n")
print("| side | offered/s | kept/s | p50 ms | CPU ms | " + " | ".join(f"{s} ms" for s in states) + " | "
      + " | ".join(calls) + " | context switches |")
print("|" + "---|" * (5 + len(states) + len(calls) + 1))
for row in rows:
    profile = row["profile"]
    ms = profile["scheduler_ms_per_order"]
    made = profile["syscalls_per_order"]
    counts = [made.get(name, 0) for name in calls]
    print(f"| {row['side']} | {row['offered_rate']:.0f} | {row['throughput']:.0f} | {row['latency_ms']['p50']:.1f} | "
          f"{profile['cpu_ms_per_order']:.3f} | " + " | ".join(f"{ms.get(s, 0):.3f}" for s in states) + " | "
          + " | ".join(f"{c:.2f}" for c in counts) + f" | {profile['context_switches_per_order']:.2f} |")
