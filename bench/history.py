#!/usr/bin/env python3
"""Append one benchmark run to bench/results/history.jsonl.

    python3 bench/history.py RAW.tsv DATE COMMIT [NOTE]

RAW.tsv holds one measurement per line: workload, target, run, value
(tab-separated), as bench/run.sh writes it. The history gets one JSON object
per run, on one line:

    {"date": "2026-11-23T14:28Z", "commit": "0c0fe03", "note": "...",
     "figures": {"WRITE": {"plain": 1579.0, "gocryptfs": 299.3, "pkfs": 464.8}, ...}}

Each figure is the median of that run's measurements for the workload and
target, as in the report. Units are those of bench/README.md ("Figures").
"""
import json
import statistics
import sys
from collections import defaultdict


def figures(raw_path):
    values = defaultdict(list)
    with open(raw_path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            workload, target, _run, value = parts
            try:
                values[(workload, target)].append(float(value))
            except ValueError:
                continue
    out = defaultdict(dict)
    for (workload, target), vs in sorted(values.items()):
        out[workload][target] = round(statistics.median(vs), 4)
    return dict(out)


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    raw, date, commit = argv[1], argv[2], argv[3]
    entry = {"date": date, "commit": commit}
    if len(argv) > 4 and argv[4]:
        entry["note"] = argv[4]
    entry["figures"] = figures(raw)
    history = __file__.rsplit("/", 1)[0] + "/results/history.jsonl"
    with open(history, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
