#!/usr/bin/env python
"""What gives memory back after a large request on the openvino backend: glibc's ``malloc_trim`` (which
``sdk serve`` runs after one anyway), dropping the session's idle infer requests (each keeps the
buffers of the largest shape it ran), or only closing the compiled models?

    .venv-plugins/bin/python examples/sdk-openvino/release_rss.py [--side 1600] [--rounds 2]

Each round runs two fresh processes (srcnn3 x2 on openvino, one side x side image through the
Predictor's default plan, in windows as ``sdk serve`` runs it): one trims, then drops the idle infer
requests, then closes the Predictor; the other drops the requests first. Each prints its RSS idle, at
its peak, right after the request and after each step, side by side; the load average is printed with
them. tests/test_release_rss.py runs it small.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import ctypes, ctypes.util, json, sys, time
import numpy as np, psutil

from sdk import Predictor

side, steps = int(sys.argv[1]), sys.argv[2].split(",")
process = psutil.Process()
trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
p = Predictor("srcnn3", backend="openvino")
rng = np.random.default_rng(0)
p(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), scale=2)
time.sleep(0.5)
rows = [["idle", process.memory_info().rss]]
out = p(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), scale=2)
del out
rows.append(["after", process.memory_info().rss])


def openvino_sessions(session):
    # The Predictor's session is sdk's per-factor wrapper around OpenVinoSessions (or one of them).
    inner = [session.session_for(key) for key in session.loaded_factors] if hasattr(session, "loaded_factors") else []
    return [s for s in (*inner, getattr(session, "_generic", None), session) if hasattr(s, "_idle")]


cleared = 0
for step in steps:
    if step == "clear":
        for session in openvino_sessions(p.session):
            cleared += len(session._idle)
            session._idle.clear()
    elif step == "close":
        p.close()
    trim(0)
    time.sleep(0.5)
    rows.append([step if step == "trim" else step + "+trim", process.memory_info().rss])
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
rows.insert(1, ["peak", peak])
print(json.dumps({"rows": rows, "cleared": cleared}))
"""


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    results = []
    for _ in range(args.rounds):
        for steps in ("trim,clear,close", "clear,close"):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.side), steps], capture_output=True, text=True, check=True
            )
            found = json.loads(done.stdout.strip().splitlines()[-1])
            rows = found["rows"]
            results.append({**dict(rows), "cleared": found["cleared"]})
            print(f"{steps:17s} " + "  ".join(f"{name} {rss / 2**20:6.1f} MiB" for name, rss in rows))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    return results


if __name__ == "__main__":
    main()
