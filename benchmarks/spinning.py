"""onnxruntime's thread pool with and without busy-waiting, on the baked stand-in model.

Usage::

    .venv/bin/python benchmarks/deform_standin.py      # once: bakes the stand-in (results/work/deform_after)
    .venv/bin/python benchmarks/spinning.py [--rounds 8]

By default the pool's threads spin for more work after each parallel section and after each run;
the service turns that off (`session.intra_op.allow_spinning=0`). Two sessions of the same model,
the service's options with spinning on and off, run alternately in one process: per run, the wall
and CPU seconds, then the CPU the pool burns in the 0.2 s after a run while the caller waits
(which in the service is when the cutout's own work starts). Writes results/spinning.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import RESULTS, loadavg, machine_info, write_json

DEFAULT_MODEL = RESULTS / "work" / "deform_after" / "model.onnx"
IDLE_WINDOW_S = 0.2


def measure(model_path: Path, rounds: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from handler.core.cpu import available_cpus
    from handler.core.model.session import session_options

    ort.set_default_logger_severity(3)  # overriding the option's "0" is announced as a warning
    sessions = {}
    for spinning in ("1", "0"):
        options = session_options(available_cpus())
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        sessions[spinning] = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    some = sessions["0"].get_inputs()[0]
    feeds = {some.name: np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)}
    figures: dict[str, dict[str, list[float]]] = {key: {"wall": [], "cpu": [], "idle_cpu": []} for key in sessions}
    for session in sessions.values():
        session.run(None, feeds)  # warm-up: arena
    for _ in range(rounds):
        for key, session in sessions.items():
            cpu, wall = time.process_time(), time.perf_counter()
            session.run(None, feeds)
            figures[key]["wall"].append(time.perf_counter() - wall)
            figures[key]["cpu"].append(time.process_time() - cpu)
            others = time.process_time() - time.thread_time()
            threading.Event().wait(IDLE_WINDOW_S)
            figures[key]["idle_cpu"].append(time.process_time() - time.thread_time() - others)
    return {
        ("spinning" if key == "1" else "no spinning"): {
            **{f"{name}_s": statistics.median(values) for name, values in series.items()},
            **{f"all_{name}_s": values for name, values in series.items()},
        }
        for key, series in figures.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    if not args.model.exists():
        raise SystemExit(f"{args.model} is missing: run benchmarks/deform_standin.py first (it bakes the stand-in)")
    load_before = loadavg()
    results = measure(args.model, args.rounds)
    print("| pool threads | run, wall s | run, CPU s | CPU burnt in the 0.2 s after a run |")
    print("|---|---:|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['wall_s']:.3f} | {row['cpu_s']:.2f} | {max(0.0, row['idle_cpu_s']) * 1000:.1f} ms |")
    write_json(
        RESULTS / "spinning.json",
        {
            "machine": machine_info(),
            "model": str(args.model.relative_to(RESULTS.parent.parent)),
            "rounds": args.rounds,
            "loadavg": [load_before, loadavg()],
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
