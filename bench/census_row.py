"""One census step's row for census.jsonl: the step's row (bench/step_row.py) plus, for each of the
side's services, what crossed its connections during the step (the proxy's totals after minus before),
per order.
  census_row.py STEP_ROW_JSON BEFORE_JSON AFTER_JSON"""
import json
import sys
from collections import Counter

TWIN_ROLES = {"order": "OrderService", "inventory": "InventoryService", "payment": "PaymentService"}


def service_of(process):
    words = process.split()
    if words and words[0] == "MassTransitTwin" and len(words) > 1:
        return TWIN_ROLES.get(words[1], process)
    return words[0] if words else process


def minus(after, before):
    """Counters after minus before, for the nested totals of one direction."""
    delta = {}
    for key, value in after.items():
        if isinstance(value, dict):
            delta[key] = dict(Counter(value) - Counter(before.get(key, {})))
        else:
            delta[key] = value - before.get(key, 0)
    return delta


def add(total, part):
    for key, value in part.items():
        if isinstance(value, dict):
            total[key] = dict(Counter(total.get(key, {})) + Counter(value))
        else:
            total[key] = total.get(key, 0) + value


step = json.loads(sys.argv[1])
before = json.load(open(sys.argv[2]))["connections"]
after = json.load(open(sys.argv[3]))["connections"]
orders = max(1, step["completed"] + step["failed"])
services = {}
for index, connection in enumerate(after):
    earlier = before[index] if index < len(before) else {"c2b": {}, "b2c": {}}
    service = services.setdefault(service_of(connection["process"]), {"connections": 0, "c2b": {}, "b2c": {}})
    service["connections"] += 1
    for direction in ("c2b", "b2c"):
        add(service[direction], minus(connection[direction], earlier.get(direction, {})))
published = sum(service["c2b"].get("methods", {}).get("basic.publish", 0) for service in services.values())
if step["completed"] + step["failed"] == 0 or published == 0:
    sys.exit(f"census of {step.get('side')}: {step['completed'] + step['failed']} orders finished and the proxy "
             f"counted {published} publishes: the services did not work through it")
print(json.dumps(dict(step, kind="census", orders=orders, wire=services)))
