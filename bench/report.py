"""Turns bench/run.sh's results (one JSON object per measured load) into report.json, report.md and
latency.png (latency percentiles against offered load, the ceiling marked)."""
import json
import subprocess
import sys

results_path, out, machine = sys.argv[1], sys.argv[2], sys.argv[3]
if results_path.endswith(".json"):  # re-render an earlier report
    rows = json.load(open(results_path))["runs"]
else:
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
json.dump({"machine": machine, "runs": rows}, open(f"{out}/report.json", "w"), indent=2)

lines = [f"# Benchmark report", "", f"Machine: {machine}. Command: `bash bench/run.sh`.", ""]
for sync in sorted({r["synchronous"] for r in rows}):
    runs = [r for r in rows if r["synchronous"] == sync]
    ceiling = runs[0]["ceiling"]
    best = max(r["throughput"] for r in runs if r["lost"] == 0 and r["duplicated"] == 0) if runs else 0
    lines += [f"## SQLite synchronous={sync}", "",
              f"Broker ceiling (six confirmed, persistent, acked hops + a SQLite upsert per saga step): **{ceiling:.0f} orders/s**. "
              f"Best sustained: **{best:.0f} orders/s = {best / ceiling:.0%} of the ceiling**.", "",
              "| offered/s | sustained/s | ratio | p50 ms | p95 ms | p99 ms | max ms | lost | dup | CPU s/1000 orders (broker, order, inventory, payment, generator) | peak RSS MB (order, inventory, payment) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        l, c, m = r["latency_ms"], r["cpu_seconds_per_1000_orders"], r["peak_rss_mb"]
        lines.append(f"| {r['offered_rate']:.0f} | {r['throughput']:.0f} | {r['ratio_to_ceiling']:.2f} | {l['p50']:.1f} | {l['p95']:.1f} | "
                     f"{l['p99']:.1f} | {l['max']:.1f} | {r['lost']} | {r['duplicated']} | "
                     f"{c['broker']:.2f}, {c['OrderService']:.2f}, {c['InventoryService']:.2f}, {c['PaymentService']:.2f}, {c['load-generator']:.2f} | "
                     f"{m['OrderService']:.1f}, {m['InventoryService']:.1f}, {m['PaymentService']:.1f} |")
    lines.append("")
open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")

data = f"{out}/latency.dat"
with open(data, "w") as f:
    for sync in sorted({r["synchronous"] for r in rows}):
        f.write(f'"{sync}"\n')
        for r in rows:
            if r["synchronous"] == sync:
                l = r["latency_ms"]
                f.write(f"{r['offered_rate']} {l['p50']} {l['p95']} {l['p99']} {r['ceiling']}\n")
        f.write("\n\n")
ceilings = {r["synchronous"]: r["ceiling"] for r in rows}
arrows = "\n".join(f'set arrow from {c},graph 0 to {c},graph 1 nohead dt 2 lc rgb "gray"\n'
                   f'set label "ceiling ({s})" at {c},graph 0.95 right offset -0.5,0' for s, c in ceilings.items())
script = f"""
set terminal png size 1000,600
set output "{out}/latency.png"
set title "End-to-end latency against offered load"
set xlabel "offered orders/s"
set ylabel "latency (ms)"
set logscale y
set key left top
set xrange [0:{max(ceilings.values()) * 1.08}]
{arrows}
plot for [i=0:{len(ceilings) - 1}] "{data}" index i using 1:2 with linespoints title columnheader(1)." p50", \\
     for [i=0:{len(ceilings) - 1}] "{data}" index i using 1:3 with linespoints title columnheader(1)." p95", \\
     for [i=0:{len(ceilings) - 1}] "{data}" index i using 1:4 with linespoints title columnheader(1)." p99"
"""
subprocess.run(["gnuplot"], input=script, text=True, check=True)

# Every accepted order must reach exactly one final event.
bad = [r for r in rows if r["lost"] or r["duplicated"] or r["completed"] + r["failed"] == 0]
for r in bad:
    print(f"FAILED: offered {r['offered_rate']}/s ({r['synchronous']}): lost {r['lost']}, duplicated {r['duplicated']}, "
          f"finished {r['completed'] + r['failed']}", file=sys.stderr)
sys.exit(1 if bad else 0)
