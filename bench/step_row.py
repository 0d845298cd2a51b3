"""One load step's row for results.jsonl: SagaBench load's JSON plus the fields given, with each
process's CPU milliseconds per order (from /proc ticks before and after the step) and each service's
peak RSS in MB.
  step_row.py LOAD_JSON FIELDS_JSON TICKS_PER_SECOND NAME=PID:TICKS_BEFORE:TICKS_AFTER:PEAK_RSS_KB ...
A process named "broker" gets no RSS figure (the broker is not one of the services)."""
import json
import sys

load, fields, hz = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
orders = max(1, load["completed"] + load["failed"])
cpu, rss = {}, {}
for entry in sys.argv[4:]:
    name, rest = entry.split("=", 1)
    _pid, before, after, peak = rest.split(":")
    cpu[name] = (int(after) - int(before)) / hz * 1000 / orders
    if name != "broker":
        rss[name] = int(peak) / 1024
cpu["load-generator"] = load["cpu_seconds"] * 1000 / orders
print(json.dumps(dict(load, **fields, cpu_seconds_per_1000_orders=cpu, peak_rss_mb=rss)))
