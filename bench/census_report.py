"""The census report (markdown) from census.jsonl: per side and rate, the broker's CPU per order and
what each order put on the wire (client to broker, broker to client): socket reads, frames, bytes,
acks and confirms with how many deliveries or publishes each settled; then the methods per order.
  census_report.py CENSUS_JSONL"""
import json
import sys
from collections import Counter

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]


def total(row, direction, key):
    return sum(service[direction].get(key, 0) for service in row["wire"].values())


def counted(row, direction, key):
    counts = Counter()
    for service in row["wire"].values():
        counts.update(service[direction].get(key, {}))
    return counts


def per_order(value, row):
    return value / row["orders"]


def ratio(numerator, denominator):
    return f"{numerator / denominator:.2f}" if denominator else "-"


print("# What an order costs the broker on the wire: ours and the MassTransit twin\n")
print("Each side's services connect through bench/amqp_census.py; figures per order finished in the step. "
      "c2b: the services to the broker; b2c: the broker to the services. A read is one socket read at the "
      "proxy (a client's writes arrive in at most that many pieces).\n")
print("| side | offered/s | kept/s | broker CPU ms | reads c2b | reads b2c | frames c2b | frames b2c "
      "| bytes c2b | bytes b2c | client acks | deliveries per ack | confirms | publishes per confirm |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for row in rows:
    c2b_methods, b2c_methods = counted(row, "c2b", "methods"), counted(row, "b2c", "methods")
    acks = c2b_methods["basic.ack"]
    acked = counted(row, "c2b", "settled")["basic.ack"]
    confirms = b2c_methods["basic.ack"]
    confirmed = counted(row, "b2c", "settled")["basic.ack"]
    print(f"| {row['side']} | {row['offered_rate']:.0f} | {row['throughput']:.0f} "
          f"| {row['cpu_seconds_per_1000_orders']['broker']:.3f} "
          f"| {per_order(total(row, 'c2b', 'reads'), row):.1f} | {per_order(total(row, 'b2c', 'reads'), row):.1f} "
          f"| {per_order(sum(counted(row, 'c2b', 'frames').values()), row):.1f} "
          f"| {per_order(sum(counted(row, 'b2c', 'frames').values()), row):.1f} "
          f"| {per_order(total(row, 'c2b', 'bytes'), row):.0f} | {per_order(total(row, 'b2c', 'bytes'), row):.0f} "
          f"| {per_order(acks, row):.2f} | {ratio(acked, acks)} "
          f"| {per_order(confirms, row):.2f} | {ratio(confirmed, confirms)} |")

print("\n## Per service\n")
print("| side | offered/s | service | connections | reads c2b | reads b2c | frames c2b | frames b2c |")
print("|---|---|---|---|---|---|---|---|")
for row in rows:
    for name, service in sorted(row["wire"].items()):
        print(f"| {row['side']} | {row['offered_rate']:.0f} | {name} | {service['connections']} "
              f"| {per_order(service['c2b'].get('reads', 0), row):.2f} | {per_order(service['b2c'].get('reads', 0), row):.2f} "
              f"| {per_order(sum(service['c2b'].get('frames', {}).values()), row):.2f} "
              f"| {per_order(sum(service['b2c'].get('frames', {}).values()), row):.2f} |")

print("\n## Methods per order\n")
names = sorted({name for row in rows for d in ("c2b", "b2c") for name in counted(row, d, "methods")})
header = [f"{row['side']} {row['offered_rate']:.0f}/s" for row in rows]
print("| method | direction | " + " | ".join(header) + " |")
print("|---|---|" + "---|" * len(rows))
for direction in ("c2b", "b2c"):
    for name in names:
        values = [per_order(counted(row, direction, "methods")[name], row) for row in rows]
        if any(values):
            print(f"| {name} | {direction} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
