"""Turns bench/run.sh's results (one JSON object per line: fixed-rate steps, find-the-maximum runs,
the embedded run) into report.json, report.md and latency.png (latency percentiles against offered
load, the ceiling marked), and checks the targets of the benchmark issue."""
import json
import statistics
import subprocess
import sys

results_path, out, machine = sys.argv[1], sys.argv[2], sys.argv[3]
settings = sys.argv[4] if len(sys.argv) > 4 else ""
if results_path.endswith(".json"):  # re-render an earlier report
    report = json.load(open(results_path))
    rows, settings = report["runs"], report.get("settings", settings)
else:
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
json.dump({"machine": machine, "settings": settings, "runs": rows}, open(f"{out}/report.json", "w"), indent=2)

steps = [r for r in rows if r.get("kind", "step") == "step"]
maxima = {r["synchronous"]: r for r in rows if r.get("kind") == "max"}
embedded = next((r for r in rows if r.get("kind") == "embedded"), None)
chains = {r["synchronous"]: r for r in rows if r.get("kind") == "chain"}
ceiling_runs = {r["synchronous"]: r["runs"] for r in rows if r.get("kind") == "ceiling"}
soaks = [r for r in rows if r.get("kind") == "soak"]
twin_max = next((r for r in rows if r.get("kind") == "twin-max"), None)
pairs = [r for r in rows if r.get("kind") == "pair"]
metrics_maxima = {r["metrics"]: r for r in rows if r.get("kind") == "metrics-max"}
metrics_steps = [r for r in rows if r.get("kind") == "metrics-step"]


def clean(r):
    return r["lost"] == 0 and r["duplicated"] == 0


def kept_up(r):
    return clean(r) and r["throughput"] >= 0.95 * r["offered_rate"]


def median_of(runs):
    """One row for the repeated runs of a fixed step: the median of each figure (peak RSS: the highest),
    the run-by-run p50 and p99 kept beside it, lost and duplicated summed."""
    if len(runs) == 1:
        return dict(runs[0], p50_p99_of_runs=[])
    med = statistics.median
    first = runs[0]
    ratio = {"ratio_to_ceiling": med([r["ratio_to_ceiling"] for r in runs])} if "ratio_to_ceiling" in first else {}
    return dict(first, **ratio,
                throughput=med([r["throughput"] for r in runs]),
                latency_ms={k: med([r["latency_ms"][k] for r in runs]) for k in first["latency_ms"]},
                accepted_latency_ms={k: med([r["accepted_latency_ms"][k] for r in runs]) for k in first["accepted_latency_ms"]},
                send_lag_ms={k: med([r["send_lag_ms"][k] for r in runs]) for k in first["send_lag_ms"]},
                cpu_seconds_per_1000_orders={k: med([r["cpu_seconds_per_1000_orders"][k] for r in runs])
                                             for k in first["cpu_seconds_per_1000_orders"]},
                peak_rss_mb={k: max(r["peak_rss_mb"][k] for r in runs) for k in first["peak_rss_mb"]},
                lost=sum(r["lost"] for r in runs), duplicated=sum(r["duplicated"] for r in runs),
                p50_p99_of_runs=[(r["latency_ms"]["p50"], r["latency_ms"]["p99"]) for r in runs])


def max_steps_table(steps):
    """The rows of a find-the-maximum run, one a step, with its verdict."""
    rows = ["| offered/s | sustained/s | p50 ms | p99 ms | lost | dup | kept up |", "|---|---|---|---|---|---|---|"]
    for step in steps:
        l = step["latency_ms"]
        verdict = {True: "yes", False: "no"}.get(step.get("kept_up"), "-")
        rows.append(f"| {step['offered_rate']:.0f} | {step['throughput']:.0f} | {l['p50']:.1f} | {l['p99']:.1f} | "
                    f"{step['lost']} | {step['duplicated']} | {verdict} |")
    return rows


lines = ["# Benchmark report", "", f"Machine: {machine}. Command: `bash bench/run.sh` ({settings}).", ""]
checks = []
step_rows = {}  # synchronous -> one (median) row per fixed step
for sync in sorted({r["synchronous"] for r in steps}):
    all_runs = [r for r in steps if r["synchronous"] == sync]
    runs = [median_of([r for r in all_runs if r["fraction"] == fraction])
            for fraction in sorted({r["fraction"] for r in all_runs})]
    repeats = max(len(r["p50_p99_of_runs"]) for r in runs) or 1
    step_rows[sync] = runs
    ceiling = runs[0]["ceiling"]
    sustained = [r["throughput"] for r in runs if kept_up(r)]
    best_fixed = max(sustained) if sustained else 0
    found = maxima.get(sync)
    best = max(best_fixed, found["maximum_rate"] if found else 0)
    runs_of_ceiling = ceiling_runs.get(sync, [])
    of_runs = (f" (the median of {len(runs_of_ceiling)} runs: {', '.join(f'{c:.0f}' for c in runs_of_ceiling)})"
               if len(runs_of_ceiling) > 1 else "")
    lines += [f"## SQLite synchronous={sync}", "",
              f"Broker ceiling (six confirmed, persistent, acked hops + a SQLite upsert per saga step): **{ceiling:.0f} orders/s**{of_runs}. "
              f"Highest rate sustained (95% of the offered rate or more, nothing lost): **{best:.0f} orders/s = {best / ceiling:.0%} of the ceiling**.", "",
              (f"Each fixed step ran {repeats} times; its row gives the median of each figure (peak RSS: the highest), "
               "and the last column the p50 / p99 of each run." if repeats > 1 else "Each fixed step ran once."), "",
              "| offered/s | sustained/s | ratio | p50 ms | p95 ms | p99 ms | max ms | 202 p50/p99 ms | lost | dup | CPU s/1000 orders (broker, order, inventory, payment, generator) | peak RSS MB (order, inventory, payment) | p50 / p99 ms of each run |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        l, c, m = r["latency_ms"], r["cpu_seconds_per_1000_orders"], r["peak_rss_mb"]
        a = r.get("accepted_latency_ms", {"p50": float("nan"), "p99": float("nan")})
        lines.append(f"| {r['offered_rate']:.0f} | {r['throughput']:.0f} | {r['ratio_to_ceiling']:.2f} | {l['p50']:.1f} | {l['p95']:.1f} | "
                     f"{l['p99']:.1f} | {l['max']:.1f} | {a['p50']:.1f} / {a['p99']:.1f} | {r['lost']} | {r['duplicated']} | "
                     f"{c['broker']:.2f}, {c['OrderService']:.2f}, {c['InventoryService']:.2f}, {c['PaymentService']:.2f}, {c['load-generator']:.2f} | "
                     f"{m['OrderService']:.1f}, {m['InventoryService']:.1f}, {m['PaymentService']:.1f} | "
                     f"{'; '.join(f'{p50:.0f} / {p99:.0f}' for p50, p99 in r['p50_p99_of_runs']) or '-'} |")
    lines += ["", "Latency runs from an order's scheduled send to its final event; \"202\" is from the scheduled send to "
              "the HTTP answer, which OrderService sends once the order and its `OrderSubmitted` are stored "
              "(the outbox publishes it)."]
    lines[-1] += (" Both include the load generator's own lag, from an order's scheduled time to its request being "
                  "written (p50 / p99 at each step): "
                  + ", ".join(f"{r['send_lag_ms']['p50']:.2f} / {r['send_lag_ms']['p99']:.1f} ms" for r in runs) + ".")
    chain = chains.get(sync)
    if chain:
        cl = chain["latency_ms"]
        lines += ["", f"The broker's own latency at {chain['offered_rate']:.0f} chains/s (half the ceiling; `SagaBench chain`: the same "
                  f"six hops started open-loop, no HTTP, no saga logic): p50 **{cl['p50']:.1f} ms**, p95 {cl['p95']:.1f} ms, "
                  f"p99 **{cl['p99']:.1f} ms**, max {cl['max']:.1f} ms. This is the floor under the system's latency at that load."]
    if found:
        decision_runs = found.get("decision_runs", 1)
        decided = (f"; whether it kept up with a rate is the majority of up to {decision_runs} runs at that rate"
                   if decision_runs > 1 else "")
        lines += ["", f"Find-the-maximum (`SagaBench max`, +15% a step until it falls behind, then steps that halve the last gap"
                  f"{decided}; in the order run): kept up with **{found['maximum_rate']:.0f} orders/s**.", "",
                  *max_steps_table(found["steps"])]
    lines.append("")
    half = min(runs, key=lambda r: abs(r["fraction"] - 0.5))
    if sync == "Normal":
        checks.append(("Normal: sustained >= 70% of the ceiling", f"{best / ceiling:.0%}", best >= 0.7 * ceiling))
        checks.append((f"Normal: at {half['fraction']:.2f} of the ceiling, p99 < 100 ms and p50 < 15 ms",
                       f"p99 {half['latency_ms']['p99']:.1f} ms, p50 {half['latency_ms']['p50']:.1f} ms",
                       half["latency_ms"]["p99"] < 100 and half["latency_ms"]["p50"] < 15 and kept_up(half)))
    else:
        checks.append((f"{sync}: sustained >= 1,000 orders/s", f"{best:.0f}/s", best >= 1000))
    peak = max(max(r["peak_rss_mb"].values()) for r in runs)
    checks.append((f"{sync}: peak RSS of each service < 50 MB", f"{peak:.1f} MB", peak < 50))
for soak in soaks:
    samples = soak["rss_samples"]
    services = [k for k in samples[0] if k != "t"]
    # "Minute 1 of 5": the first sample after a fifth of the run; the end: the last one inside the run.
    early = next(x for x in samples if x["t"] >= soak["seconds"] / 5)
    late = [x for x in samples if x["t"] <= soak["seconds"]][-1]
    growth = {k: late[k] / early[k] - 1 for k in services}
    lines += [f"## No leak: {soak['seconds']:.0f} s at {soak['offered_rate']:.0f} orders/s (half the ceiling, {soak['synchronous']})", "",
              f"Each service's resident set (VmRSS) sampled every second while `SagaBench load` ran: sustained "
              f"{soak['throughput']:.0f} orders/s, p50 {soak['latency_ms']['p50']:.1f} ms, p99 {soak['latency_ms']['p99']:.1f} ms, "
              f"{soak['lost']} lost, {soak['duplicated']} duplicated.", "",
              "| service | RSS MB at %.0f s | RSS MB at %.0f s | change | highest MB |" % (early["t"], late["t"]), "|---|---|---|---|---|"]
    for k in services:
        lines.append(f"| {k} | {early[k]:.1f} | {late[k]:.1f} | {growth[k]:+.1%} | {max(x[k] for x in samples):.1f} |")
    lines.append("")
    checks.append((f"{soak['synchronous']}: RSS at the end of a {soak['seconds']:.0f} s run at half the ceiling within 10% of "
                   f"its value at {early['t']:.0f} s", ", ".join(f"{k} {growth[k]:+.1%}" for k in services),
                   all(abs(g) <= 0.10 for g in growth.values()) and kept_up(soak)))
checks.append(("No order lost or duplicated in any run",
               f"{sum(r['lost'] for r in steps + soaks)} lost, {sum(r['duplicated'] for r in steps + soaks)} duplicated",
               all(clean(r) for r in steps + soaks)))

if twin_max and pairs:
    services = ["OrderService", "InventoryService", "PaymentService"]
    side = {name: median_of([r for r in pairs if r["side"] == name]) for name in ("ours", "twin")}
    our_best, twin_best = side["ours"]["our_max"], twin_max["maximum_rate"]
    ratio = our_best / twin_best if twin_best else float("inf")
    rate = side["ours"]["offered_rate"]

    def cpu_ms(r, name):
        return r["cpu_seconds_per_1000_orders"][name]

    def services_cpu(r):
        return sum(cpu_ms(r, name) for name in services)

    lines += ["## Beside the MassTransit twin", "",
              "The same system written with MassTransit 8.5.12 on .NET 10 (`Tests/MassTransitTwin`: its saga in "
              "MassTransit's in-memory repository, no timeout), three processes on the same broker, driven by the same "
              "load generator with the same prefetch and HTTP connections. Ours persists its saga in SQLite "
              "(synchronous=Normal). Its highest rate comes from its own find-the-maximum run with the same rules as "
              "ours; then each system, on fresh processes, took the same load at half the lower of the two maxima.", "",
              f"| | ours | MassTransit twin | ours / twin |", "|---|---|---|---|",
              f"| highest rate kept up with | {our_best:.0f} orders/s | {twin_best:.0f} orders/s | {ratio:.2f}x |"]
    for label, key in (("p50", "p50"), ("p99", "p99")):
        a, b = side["ours"]["latency_ms"][key], side["twin"]["latency_ms"][key]
        lines.append(f"| {label} at {rate:.0f} orders/s | {a:.1f} ms | {b:.1f} ms | {a / b:.2f} |")
    for name in services + ["broker"]:
        a, b = cpu_ms(side["ours"], name), cpu_ms(side["twin"], name)
        lines.append(f"| CPU per order, {name} | {a:.3f} ms | {b:.3f} ms | {a / b:.2f} |" if b else
                     f"| CPU per order, {name} | {a:.3f} ms | {b:.3f} ms | - |")
    a, b = services_cpu(side["ours"]), services_cpu(side["twin"])
    lines.append(f"| CPU per order, the three services | {a:.3f} ms | {b:.3f} ms | {a / b:.2f} |")
    for name in services:
        a, b = side["ours"]["peak_rss_mb"][name], side["twin"]["peak_rss_mb"][name]
        lines.append(f"| peak RSS at {rate:.0f}/s, {name} | {a:.1f} MB | {b:.1f} MB | {a / b:.2f} |")
    for name in services:
        lines.append(f"| peak RSS of the twin's find-the-maximum run, {name} | - | {twin_max['peak_rss_mb'][name]:.1f} MB | - |")
    lost = sum(r["lost"] for r in pairs)
    duplicated = sum(r["duplicated"] for r in pairs)
    lines += ["", f"At {rate:.0f} orders/s: {lost} lost and {duplicated} duplicated over both systems' runs "
              f"({len(pairs)} runs). The twin's find-the-maximum steps:", "", *max_steps_table(twin_max["steps"])]
    lines.append("")
    checks.append(("Ours sustains at least 2x the MassTransit twin's orders/s",
                   f"{our_best:.0f} against {twin_best:.0f} orders/s = {ratio:.2f}x", ratio >= 2))
    rss_ratio = {name: side["ours"]["peak_rss_mb"][name] / side["twin"]["peak_rss_mb"][name] for name in services}
    checks.append(("Each of our services at most a quarter of its twin's peak RSS (same load)",
                   ", ".join(f"{name} {rss_ratio[name]:.2f}" for name in services),
                   all(v <= 0.25 for v in rss_ratio.values())))
    checks.append(("No order lost or duplicated beside the twin", f"{lost} lost, {duplicated} duplicated",
                   lost == 0 and duplicated == 0))

if len(metrics_maxima) == 2 and metrics_steps:
    services = ["OrderService", "InventoryService", "PaymentService"]
    on = median_of([r for r in metrics_steps if r["metrics"]])
    off = median_of([r for r in metrics_steps if not r["metrics"]])
    best_on, best_off = metrics_maxima[True]["maximum_rate"], metrics_maxima[False]["maximum_rate"]
    rate = on["offered_rate"]
    lines += ["## Metrics on and off", "",
              "Ours with metrics recorded (`Metrics.Enabled` true, the default) and with nothing recorded (false), each "
              "on fresh processes: its own find-the-maximum run, then the same fixed step at half the lower maximum, the "
              "two settings alternating run by run.", "",
              "| | metrics on | metrics off | on / off |", "|---|---|---|---|",
              f"| highest rate kept up with | {best_on:.0f} orders/s | {best_off:.0f} orders/s | "
              f"{best_on / best_off if best_off else float('inf'):.2f} |"]
    for key in ("p50", "p99"):
        a, b = on["latency_ms"][key], off["latency_ms"][key]
        lines.append(f"| {key} at {rate:.0f} orders/s | {a:.1f} ms | {b:.1f} ms | {a / b if b else float('inf'):.2f} |")
    for name in services + ["broker"]:
        a, b = on["cpu_seconds_per_1000_orders"][name], off["cpu_seconds_per_1000_orders"][name]
        lines.append(f"| CPU per order, {name} | {a:.3f} ms | {b:.3f} ms | {a / b if b else float('inf'):.2f} |")
    a = sum(on["cpu_seconds_per_1000_orders"][n] for n in services)
    b = sum(off["cpu_seconds_per_1000_orders"][n] for n in services)
    lines += [f"| CPU per order, the three services | {a:.3f} ms | {b:.3f} ms | {a / b if b else float('inf'):.2f} |",
              "", f"Run by run at {rate:.0f} orders/s, p50/p99 ms: on "
              + ", ".join(f"{r['latency_ms']['p50']:.1f}/{r['latency_ms']['p99']:.1f}" for r in metrics_steps if r["metrics"])
              + "; off " + ", ".join(f"{r['latency_ms']['p50']:.1f}/{r['latency_ms']['p99']:.1f}"
                                    for r in metrics_steps if not r["metrics"]) + ".", ""]
    # What a find-the-maximum run can tell apart: one step of +15%. Within it the two are the same.
    checks.append(("Recording metrics costs no measurable throughput (highest rate with metrics within one "
                   "+15% step of the rate without)", f"{best_on:.0f} against {best_off:.0f} orders/s",
                   best_on * 1.15 >= best_off))
    checks.append(("No order lost or duplicated with metrics on or off",
                   f"{sum(r['lost'] for r in metrics_steps)} lost, {sum(r['duplicated'] for r in metrics_steps)} duplicated",
                   all(clean(r) for r in metrics_steps)))

if embedded:
    lines += ["## Embedded (the in-memory bus, no broker; synchronous=Normal)", "",
              f"The same services, HTTP API and load inside one process (`SagaBench max --embedded appsettings`): kept up with "
              f"**{embedded['maximum_rate']:.0f} orders/s**. CPU is the whole process (services and load generator).", "",
              "| offered/s | sustained/s | p50 ms | p99 ms | lost | dup | CPU s/1000 orders | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for s in embedded["steps"]:
        l = s["latency_ms"]
        cpu = s["cpu_seconds"] * 1000 / max(1, s["completed"] + s["failed"])
        lines.append(f"| {s['offered_rate']:.0f} | {s['throughput']:.0f} | {l['p50']:.1f} | {l['p99']:.1f} | {s['lost']} | {s['duplicated']} | {cpu:.2f} | {s['peak_rss_mb']:.1f} |")
    lines.append("")

lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in checks]
lines.append("")
open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")

data = f"{out}/latency.dat"
with open(data, "w") as f:
    for sync in sorted({r["synchronous"] for r in steps}):
        f.write(f'"{sync}"\n')
        points = [(r["offered_rate"], r["latency_ms"]) for r in step_rows[sync]]
        if sync in maxima:
            points += [(s["offered_rate"], s["latency_ms"]) for s in maxima[sync]["steps"]]
        for rate, l in sorted(points, key=lambda p: p[0]):
            f.write(f"{rate} {l['p50']} {l['p95']} {l['p99']}\n")
        f.write("\n\n")
ceilings = {r["synchronous"]: r["ceiling"] for r in steps}
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
set xrange [0:{max(ceilings.values(), default=1) * 1.08}]
{arrows}
plot for [i=0:{len(ceilings) - 1}] "{data}" index i using 1:2 with linespoints title columnheader(1)." p50", \\
     for [i=0:{len(ceilings) - 1}] "{data}" index i using 1:3 with linespoints title columnheader(1)." p95", \\
     for [i=0:{len(ceilings) - 1}] "{data}" index i using 1:4 with linespoints title columnheader(1)." p99"
"""
if ceilings:  # a run of the leak check alone (BENCH_FRACTIONS=) has no steps to plot
    subprocess.run(["gnuplot"], input=script, text=True, check=True)

# Every accepted order must reach exactly one final event (the fixed-rate steps; a find-the-maximum
# step beyond what the system keeps up with may end its drain window with orders still in flight).
bad = [r for r in steps + soaks if not clean(r) or r["completed"] + r["failed"] == 0]
for r in bad:
    print(f"FAILED: offered {r['offered_rate']}/s ({r['synchronous']}): lost {r['lost']}, duplicated {r['duplicated']}, "
          f"finished {r['completed'] + r['failed']}", file=sys.stderr)
sys.exit(1 if bad else 0)
