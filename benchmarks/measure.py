"""Helpers shared by the benchmarks: machine description, memory readings, test inputs.

Every benchmark records the machine with its figures (these machines are shared and noisy) and
measures each configuration in a fresh subprocess, because ru_maxrss is a high-water mark that
never goes down.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = ROOT / "samples"
TWELVE_MP = (4000, 3000)


def rss_mb() -> float:
    """Current resident set size (VmRSS) of this process in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: a child inherits its parent's high-water
    mark across fork and exec, so a child of a large parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Timings are only comparable on an otherwise idle machine; record how busy it was.
        "loadavg_1_5_15": [round(value, 2) for value in os.getloadavg()],
    }


def twelve_megapixel_jpeg(path: Path) -> Path:
    """A 4000x3000 photo-like JPEG (a sample photo upscaled, with sensor-like noise), made once."""
    if path.exists():
        return path
    import numpy as np
    from PIL import Image

    photo = Image.open(SAMPLES / "astronaut.jpg").convert("RGB").resize(TWELVE_MP, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 3, (TWELVE_MP[1], TWELVE_MP[0], 3))
    pixels = np.clip(np.asarray(photo, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def run_child(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run `python script --child ...` and return the JSON object on its last stdout line."""
    completed = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
