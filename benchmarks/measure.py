"""Helpers shared by the benchmarks: machine description, memory readings, test inputs, children.

Every benchmark records the machine with its figures (these machines are shared and noisy) and
measures each configuration in a fresh subprocess, because a process's peak RSS (VmHWM) is a
high-water mark that never goes down.

Standard library only at import: vs_rembg.py's rembg side imports this from rembg's own venv
(.venv-bench), where neither handler/ nor the project's packages are importable; numpy, Pillow and
onnxruntime are imported inside the functions that need them.
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


def _status_value(field: str) -> int | None:
    """A field of /proc/self/status as its number (kB for the Vm* fields), None if absent (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak) in MB, NaN if absent."""
    value = _status_value(field)
    return float("nan") if value is None else value / 1024


def rss_mb() -> float:
    """Current resident set size (VmRSS) of this process in MB (Linux)."""
    return status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM) in MB.

    Not ru_maxrss: a child started by subprocess shares its parent's address space until exec
    (vfork-style), and exec folds that address space's high-water mark - the parent's peak RSS, even
    if since freed - into the child's ru_maxrss; a child of a large parent would report the parent's
    peak. VmHWM belongs to the address space exec created.
    """
    return status_mb("VmHWM")


def thread_count() -> int:
    """How many threads this process has now (0 if /proc does not say)."""
    return _status_value("Threads") or 0


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages: timings are only comparable on an otherwise idle machine."""
    return [round(value, 2) for value in os.getloadavg()]


def host_info() -> dict[str, Any]:
    """What the machine is: CPUs (all, and those this process may run on), CPU model, memory, OS."""
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_total_mb = None
    try:
        with open("/proc/meminfo") as meminfo:
            mem_total_mb = next(int(line.split()[1]) // 1024 for line in meminfo if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_mb": mem_total_mb,
        "platform": platform.platform(),
    }


def machine_info() -> dict[str, Any]:
    """host_info() plus this interpreter's onnxruntime and Python versions and the load average now."""
    import onnxruntime as ort

    return {
        **host_info(),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        # Timings are only comparable on an otherwise idle machine; record how busy it was.
        "loadavg_1_5_15": loadavg(),
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


def spawn_json(
    cmd: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | str | None = None
) -> dict[str, Any]:
    """Run `cmd` and return the JSON object on the last line of its stdout.

    A failure comes back as {"error": ...} (a timeout, or a non-zero exit - e.g. -9 from the OOM
    killer - with the last lines of stderr), so that a benchmark records it and goes on with the rest.
    """
    try:
        completed = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:g}s"}
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {completed.returncode}: {' | '.join(tail)}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_child(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run `python script --child ...` from the repository root and return its JSON; raise if it fails."""
    result = spawn_json(
        [sys.executable, str(script), "--child", *args], timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    if "error" in result:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed: {result['error']}")
    return result


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write a benchmark's report (indented, UTF-8), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def start_local_s3() -> tuple[Any, dict[str, str]]:
    """moto's S3 server on 127.0.0.1, in this process, and the environment that points boto3 at it.

    The environment is also set in os.environ; the caller stops the server (`server.stop()`).
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    aws = {
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)
    return server, aws
