#!/usr/bin/env python3
"""Converts a dataset in RCAEval's layout into distdiag's dataset format.

RCAEval (github.com/phamquiluan/RCAEval; data on Zenodo, record 13305663)
keeps one directory per fault case:

    SRC/<service>_<fault>/<repetition>/data.csv        time,<service>_<metric>,...
    SRC/<service>_<fault>/<repetition>/inject_time.txt  Unix seconds

`time` is in Unix seconds; every other column is one metric of one service
(`cartservice_cpu`, `cartservice_latency-50`). The root cause is the
service in the directory name, from the injection time to the end of the
recording.

    scripts/convert-rcaeval.py SRC OUT
    distdiag dataset check OUT
    distdiag eval OUT

Each service becomes a node, each repetition number a group (so
cross-validation by group keeps one sweep of the benchmark together), each
directory a case. Fault names are mapped to distdiag's types where they
mean the same (cpu, mem, disk, delay, loss); others are kept as they are.
Standard library only.
"""

import csv
import json
import os
import statistics
import sys

TYPES = {
    "cpu": "cpu_stress",
    "mem": "memory_stress",
    "disk": "disk_stress",
    "delay": "network_delay",
    "loss": "network_loss",
}


def fail(msg):
    print(f"convert-rcaeval: {msg}", file=sys.stderr)
    sys.exit(1)


def cases(src):
    for fault_dir in sorted(os.listdir(src)):
        full = os.path.join(src, fault_dir)
        if not os.path.isdir(full) or "_" not in fault_dir:
            continue
        service, fault = fault_dir.rsplit("_", 1)
        for rep in sorted(os.listdir(full)):
            case_dir = os.path.join(full, rep)
            data = os.path.join(case_dir, "data.csv")
            inject = os.path.join(case_dir, "inject_time.txt")
            if os.path.isfile(data) and os.path.isfile(inject):
                yield service, fault, rep, data, inject


def main():
    if len(sys.argv) != 3:
        fail("usage: convert-rcaeval.py SRC OUT")
    src, out = sys.argv[1], sys.argv[2]
    if os.path.exists(out) and os.listdir(out):
        fail(f"{out} exists and is not empty")
    os.makedirs(out, exist_ok=True)
    steps = []
    n_cases = 0
    with open(os.path.join(out, "series.csv"), "w", newline="") as series_f, open(
        os.path.join(out, "labels.csv"), "w", newline=""
    ) as labels_f, open(os.path.join(out, "cases.csv"), "w", newline="") as cases_f:
        series = csv.writer(series_f, lineterminator="\n")
        labels = csv.writer(labels_f, lineterminator="\n")
        case_rows = csv.writer(cases_f, lineterminator="\n")
        series.writerow(["node", "metric", "timestamp_ms", "value"])
        labels.writerow(["case", "node", "type", "start_ms", "end_ms"])
        case_rows.writerow(["case", "scenario", "start_ms", "end_ms", "group"])
        for service, fault, rep, data, inject in cases(src):
            with open(inject) as f:
                try:
                    inject_ms = int(float(f.read().strip()) * 1000)
                except ValueError:
                    fail(f"{inject}: not a Unix time in seconds")
            times = []
            with open(data, newline="") as f:
                rows = csv.reader(f)
                header = next(rows, None)
                if not header or "time" not in header:
                    fail(f"{data}: no `time` column")
                t_col = header.index("time")
                columns = []
                for i, name in enumerate(header):
                    if i != t_col and "_" in name:
                        node, metric = name.split("_", 1)
                        columns.append((i, node, metric))
                for line, row in enumerate(rows, start=2):
                    try:
                        t = int(float(row[t_col]) * 1000)
                    except (ValueError, IndexError):
                        fail(f"{data}:{line}: time {row[t_col:t_col + 1]} is not a number")
                    times.append(t)
                    for i, node, metric in columns:
                        try:
                            v = float(row[i])
                        except (ValueError, IndexError):
                            continue
                        if v == v and v not in (float("inf"), float("-inf")):
                            series.writerow([node, metric, t, repr(v)])
            if len(times) < 2:
                fail(f"{data}: fewer than two rows")
            steps.extend(b - a for a, b in zip(times, times[1:]) if b > a)
            case = f"{service}_{fault}-{rep}"
            start, end = min(times), max(times)
            if not start < inject_ms < end:
                fail(f"{inject}: the injection is outside the recording")
            case_rows.writerow([case, TYPES.get(fault, fault), start, end, rep])
            labels.writerow([case, service, TYPES.get(fault, fault), inject_ms, end])
            n_cases += 1
    if n_cases == 0:
        fail(f"{src}: no <service>_<fault>/<repetition>/ directory with data.csv and inject_time.txt")
    step = int(statistics.median(steps))
    manifest = {
        "format": "distdiag-dataset",
        "version": 1,
        "step_ms": step,
        "window": {
            "window_ms": 10 * step,
            "stride_ms": 5 * step,
            "step_ms": step,
            "baseline_ms": 120 * step,
        },
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"{out}: {n_cases} cases, step {step} ms")


if __name__ == "__main__":
    main()
