"""One broker-profile step's row for broker_profile.jsonl: the step's row (bench/step_row.py) plus,
per order finished, the broker schedulers' time in each microstate (rabbitmq-diagnostics
runtime_thread_stats) and the broker's system calls and context switches (perf stat -x,), both taken
over SAMPLE seconds of a STEP seconds long step.
  profile_row.py STEP_ROW_JSON SAMPLE_SECONDS STEP_SECONDS MSACC_TXT PERF_CSV"""
import json
import re
import sys

step = json.loads(sys.argv[1])
sample, step_seconds = float(sys.argv[2]), float(sys.argv[3])
# The load keeps a steady rate: the orders finished in the sample are its share of the step's.
orders = max(1.0, (step["completed"] + step["failed"]) * sample / step_seconds)

states, schedulers = None, 0
lines = open(sys.argv[4]).read().splitlines()
header = next((line.split() for line in lines if line.split()[:1] == ["Thread"]), None)
for line in lines:
    match = re.match(r"\s*scheduler\(\s*\d+\)\s+(.*)", line)
    if not match or header is None:
        continue
    schedulers += 1
    shares = [float(value.rstrip("%")) for value in match.group(1).split()]
    states = states or {name: 0.0 for name in header[1:]}
    for name, share in zip(header[1:], shares):
        states[name] += share / 100 * sample * 1000  # ms of this scheduler's time in the sample
if states is None:
    sys.exit("runtime_thread_stats printed no scheduler rows:\n" + "\n".join(lines))
scheduler_ms = {name: round(ms / orders, 4) for name, ms in states.items()}
scheduler_ms["busy"] = round(sum(ms for name, ms in states.items() if name != "sleep") / orders, 4)

calls, switches, task_ms = {}, 0, 0.0
for line in open(sys.argv[5]):
    fields = line.strip().split(",")
    if len(fields) < 3 or not fields[0].replace(".", "", 1).isdigit():
        continue
    value, event = float(fields[0]), fields[2]
    if event.startswith("syscalls:sys_enter_"):
        calls[event[len("syscalls:sys_enter_"):]] = round(value / orders, 3)
    elif event == "context-switches":
        switches = value
    elif event == "task-clock":
        task_ms = value
step["profile"] = {
    "sample_seconds": sample,
    "schedulers": schedulers,
    "scheduler_ms_per_order": scheduler_ms,
    "syscalls_per_order": calls,
    "context_switches_per_order": round(switches / orders, 3),
    "cpu_ms_per_order": round(task_ms / orders, 4),
}
print(json.dumps(step))
