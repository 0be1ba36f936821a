"""Benchmark our cutout pipeline against rembg, its nearest peer, on the same model and photos.

Usage (``make bench-rembg`` creates rembg's own venv first, then runs this)::

    .venv/bin/python benchmarks/vs_rembg.py [--runs 5] [--runs-large 3] [--rounds 4] [--cli-runs 3]

Both sides run the same U-2-Net-p ONNX file (scripts/fetch_u2netp.py) on the same photos: each
sample in samples/ plus a 12-megapixel JPEG (4000x3000) made here from samples/chelsea.jpg and
cached in .cache/bench/. Ours is configured as for U-2-Net (MODEL_PATH=u2netp,
MODEL_OUTPUT=probabilities) and rembg gets ``new_session("u2net_custom", model_path=...)``;
both produce an RGBA PNG cutout from the JPEG's bytes.

Every measurement runs in a fresh subprocess, ours with the project's ``.venv/bin/python``, rembg
with ``.venv-bench/bin/python`` (rembg pulls in scipy, scikit-image, pymatting/numba, gradio...,
so it has a venv of its own):

* warm, per image: load once, 1 warm-up, then the median of N timed bytes-in -> PNG-bytes-out
  calls (N=5 for the small photos, 3 for 12 MP). Each process also reports its RSS after loading
  and its peak RSS after the runs (VmHWM, see measure.peak_rss_mb; ru_maxrss is reported beside it);
  peak - RSS after loading = what the image added.
  ``--rounds 4`` (default) runs ours, rembg, rembg, ours, ours, rembg, rembg, ours (ABBA ABBA)
  per photo, so that drift in the machine's load hits both sides alike; the time is the median
  over all rounds' runs (the minimum is kept in the JSON too), the peak the highest of the rounds.
* cold, from the command line: the whole-process wall time of one cutout,
  ``python -m handler remove photo -o out.png`` vs ``rembg i -m u2net_custom -x '{"model_path": ...}'
  photo out.png``, the median of ``--cli-runs`` interleaved runs after one untimed priming run
  per side (which fills the page cache). Peak RSS of these is taken too, through a small launcher.

The parent prints a markdown table and writes ``benchmarks/results/vs_rembg.json`` with the
machine (cores, CPU model, load average before and after), the versions on each side, and per
photo the figures above plus how far the two cutouts' alphas agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# benchmarks/, not the repository root: rembg's side runs this file in .venv-bench, and measure.py
# needs only the standard library there.
sys.path.insert(0, str(HERE))

from measure import host_info, loadavg, peak_rss_mb, rss_mb, spawn_json, thread_count, write_json  # noqa: E402

RESULTS = HERE / "results" / "vs_rembg.json"
CACHE = REPO / ".cache" / "bench"
OURS_PYTHON = REPO / ".venv" / "bin" / "python"
BENCH_VENV = REPO / ".venv-bench"

# The 12 MP case: a sample photo cropped to 4:3, upscaled with Lanczos, mild seeded noise (so it
# compresses like a camera JPEG rather than a smooth upscale), saved at JPEG quality 90.
LARGE_SOURCE = "chelsea.jpg"
LARGE_SIZE = (4000, 3000)
LARGE_NOISE_SIGMA = 4.0
LARGE_QUALITY = 90
LARGE_SEED = 20240601

# Targets from the "Performance" issue, case 1.
TARGET_SPEEDUP = 2.0
TARGET_MEMORY_RATIO = 0.70

CHILD_TIMEOUT_S = 300
SIDES = ("ours", "rembg")


# --------------------------------------------------------------------------------------------
# Child side: runs inside .venv/bin/python (ours) or .venv-bench/bin/python (rembg).
# --------------------------------------------------------------------------------------------


def _ru_maxrss_mb() -> float:
    """ru_maxrss, kept beside VmHWM for comparison: behind the parent that made the 12 MP photo it
    reported that parent's ~636 MB in every child (see measure.peak_rss_mb)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load_ours(model: str):
    """Ours as the Lambda function runs it: settings from the environment, then render.process."""
    os.environ["MODEL_PATH"] = model
    os.environ["MODEL_OUTPUT"] = "probabilities"
    sys.path.insert(0, str(REPO))  # handler/
    import onnxruntime
    import PIL

    from handler.core.image.decode import load_picture
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.model.session import load_model
    from handler.core.model.settings import ModelSettings
    from handler.core.render import process

    settings = ModelSettings.from_env()
    model_obj = load_model(settings)
    limits = ImageLimits.from_env()
    # Like for like: rembg's cutout keeps the blended edge colours, so ours runs with refine=false
    # here; the default (refined) cutout is timed separately, after the memory figures are read.
    options = RenderOptions(refine=False)

    def cutout(data: bytes) -> bytes:
        return process(data, ["cutout"], options, model_obj, limits).outputs["cutout"].data

    def extras(data: bytes) -> dict[str, Callable[[], object]]:
        """The bare session.run on this photo's model input (the floor any pipeline pays), and
        the default cutout with refined edges."""
        tensor = model_obj.preprocess(load_picture(data, limits).rgb)
        return {
            "session_run_ms": lambda: model_obj.infer(tensor),
            "refined_ms": lambda: process(data, ["cutout"], RenderOptions(), model_obj, limits),
        }

    versions = {"onnxruntime": onnxruntime.__version__, "pillow": PIL.__version__, "session_threads": settings.threads}
    return cutout, versions, extras


def _load_rembg(model: str):
    """rembg's documented library use: one session, then remove(bytes, session=...) -> PNG bytes."""
    # rembg only accepts a model_path under its home folder (REMBG_HOME); the parent points that
    # at the folder that holds the file, so both sides read the very same file.
    from importlib.metadata import version

    import onnxruntime
    import PIL
    from rembg import new_session, remove

    session = new_session("u2net_custom", model_path=model)

    def cutout(data: bytes) -> bytes:
        return remove(data, session=session)

    return cutout, {"onnxruntime": onnxruntime.__version__, "pillow": PIL.__version__, "rembg": version("rembg")}, None


def run_child(side: str, model: str, image: str, runs: int, save: str | None) -> dict[str, Any]:
    """Measure one side on one photo in *this* process."""
    data = Path(image).read_bytes()  # read first, so its bytes are in every baseline alike
    rss_start = rss_mb()
    started = time.perf_counter()
    cutout, versions, extras = (_load_ours if side == "ours" else _load_rembg)(model)
    load_s = time.perf_counter() - started
    rss_after_load = rss_mb()

    started = time.perf_counter()
    out = cutout(data)
    warmup_s = time.perf_counter() - started
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        out = cutout(data)
        times.append(time.perf_counter() - started)
    peak = peak_rss_mb()
    if save:
        Path(save).write_bytes(out)
    extra_runs: dict[str, list[float]] = {}
    # After the peak is read, so that they cannot change the memory figures.
    for name, call in (extras(data) if extras is not None else {}).items():
        call()
        extra_runs[name] = []
        for _ in range(runs):
            started = time.perf_counter()
            call()
            extra_runs[name].append(time.perf_counter() - started)
    return {
        "side": side,
        "versions": versions,
        "python": platform.python_version(),
        "load_s": round(load_s, 3),
        "warmup_ms": round(warmup_s * 1000, 1),
        "runs_ms": [round(t * 1000, 1) for t in times],
        "median_ms": round(statistics.median(times) * 1000, 1),
        "rss_before_load_mb": round(rss_start, 1),
        "rss_after_load_mb": round(rss_after_load, 1),
        "rss_after_runs_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(peak, 1),
        "ru_maxrss_mb": round(_ru_maxrss_mb(), 1),
        "threads": thread_count(),
        "output_bytes": len(out),
        **{name: [round(t * 1000, 1) for t in times] for name, times in extra_runs.items()},
    }


# --------------------------------------------------------------------------------------------
# Parent side: runs inside the project's venv (needs Pillow and numpy for the photo and checks).
# --------------------------------------------------------------------------------------------


def _bench_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def _rembg_cli() -> Path:
    return BENCH_VENV / "bin" / "rembg"


def _large_photo() -> Path:
    """The 12 MP JPEG, made once and cached (deterministic: fixed crop, filter, seed)."""
    import numpy as np
    from PIL import Image

    w, h = LARGE_SIZE
    target = CACHE / f"{Path(LARGE_SOURCE).stem}-{w}x{h}-n{LARGE_NOISE_SIGMA:g}-q{LARGE_QUALITY}.jpg"
    if target.is_file():
        return target
    with Image.open(REPO / "samples" / LARGE_SOURCE) as opened:
        source = opened.convert("RGB")
        sw, sh = source.size
        # Centre crop to the target's aspect ratio, then upscale.
        cw, ch = (sw, round(sw * h / w)) if sw * h <= sh * w else (round(sh * w / h), sh)
        left, top = (sw - cw) // 2, (sh - ch) // 2
        big = source.crop((left, top, left + cw, top + ch)).resize(LARGE_SIZE, Image.Resampling.LANCZOS)
    pixels = np.asarray(big, dtype=np.float32)
    pixels += np.random.default_rng(LARGE_SEED).normal(0.0, LARGE_NOISE_SIGMA, pixels.shape).astype(np.float32)
    noisy = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    noisy.save(partial, "JPEG", quality=LARGE_QUALITY)
    partial.replace(target)
    return target


def _cases() -> list[tuple[str, Path, int]]:
    """(name, photo, megapixels*1e6) for each sample and the 12 MP JPEG."""
    from PIL import Image

    photos = [*sorted((REPO / "samples").glob("*.jpg")), _large_photo()]
    cases = []
    for photo in photos:
        with Image.open(photo) as image:
            width, height = image.size
        name = "12 MP" if photo.parent == CACHE else photo.stem
        cases.append((name, photo, width * height))
    return cases


def _child_env(side: str, model: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "REMBG_", "U2NET_"))}
    if side == "rembg":
        env["REMBG_HOME"] = str(model.parent)
    else:
        env["MODEL_PATH"] = str(model)
        env["MODEL_OUTPUT"] = "probabilities"
    return env


def _spawn(side: str, model: Path, image: Path, runs: int, save: Path) -> dict[str, Any]:
    python = OURS_PYTHON if side == "ours" else _bench_python()
    cmd = [
        str(python),
        __file__,
        "--child",
        side,
        "--model",
        str(model),
        "--image",
        str(image),
        "--runs",
        str(runs),
        "--save",
        str(save),
    ]
    result = spawn_json(cmd, timeout=CHILD_TIMEOUT_S, env=_child_env(side, model), cwd=REPO)
    return {"side": side, **result} if "error" in result else result


def _cli_command(side: str, model: Path, image: Path, out: Path) -> list[str]:
    if side == "ours":
        return [str(OURS_PYTHON), "-m", "handler", "remove", str(image), "-o", str(out)]
    return [
        str(_rembg_cli()),
        "i",
        "-m",
        "u2net_custom",
        "-x",
        json.dumps({"model_path": str(model)}),
        str(image),
        str(out),
    ]


def launch(cmd: list[str]) -> dict[str, Any]:
    """Run `cmd` as a child of *this* (small) process: its wall time and its own ru_maxrss.

    The command-line runs go through this launcher, a fresh small Python, because a child's
    ru_maxrss starts at its parent's RSS at fork (see measure.peak_rss_mb), and the benchmark's parent
    holds the 12 MP photo's arrays. The launcher's RSS at fork is reported as the floor.
    """
    floor = rss_mb()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "floor_mb": floor,
    }


def _time_cli(side: str, model: Path, image: Path, out: Path) -> dict[str, Any]:
    """Wall time and peak RSS of one whole command-line process, from fork to exit."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-S", __file__, "--launch", "--", *_cli_command(side, model, image, out)]
    proc = subprocess.run(
        cmd,
        env=_child_env(side, model),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"exit": f"launcher {proc.returncode}"}
    if result["exit"] != 0 or not out.is_file():
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {result['exit']}: {' | '.join(tail)}"}
    return result


def _check_cutout(path: Path, size: tuple[int, int]) -> str | None:
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "PNG" or image.mode != "RGBA" or image.size != size:
            return f"expected an RGBA PNG of {size}, got {image.format} {image.mode} {image.size}"
    return None


def _agreement(ours: Path, rembg: Path) -> dict[str, float]:
    """How far the two cutouts' alphas agree: IoU of alpha >= 128, mean |difference| in 0..255."""
    import numpy as np
    from PIL import Image

    with Image.open(ours) as a, Image.open(rembg) as b:
        alpha_a = np.asarray(a.getchannel("A"), dtype=np.int16)
        alpha_b = np.asarray(b.getchannel("A"), dtype=np.int16)
    fg_a, fg_b = alpha_a >= 128, alpha_b >= 128
    union = np.logical_or(fg_a, fg_b).sum()
    iou = float(np.logical_and(fg_a, fg_b).sum() / union) if union else 1.0
    return {"alpha_iou": round(iou, 4), "alpha_mean_abs_diff": round(float(np.abs(alpha_a - alpha_b).mean()), 2)}


def _machine_info() -> dict[str, Any]:
    return {
        **host_info(),
        # Inherited by both sides' processes: OMP_NUM_THREADS sets rembg's onnxruntime threads, and
        # PYTHONDONTWRITEBYTECODE=1 means our handler/ (not installed, so not precompiled) is compiled
        # from source in every cold process.
        "env": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "PYTHONDONTWRITEBYTECODE")},
    }


def _summarise(case: str, pixels: int, rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    row: dict[str, Any] = {"case": case, "megapixels": round(pixels / 1e6, 2)}
    for side in SIDES:
        results = [r[side] for r in rounds]
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            row[f"{side}_error"] = errors[0]
            continue
        runs = [t for r in results for t in r["runs_ms"]]
        row[f"{side}_ms"] = round(statistics.median(runs), 1)
        row[f"{side}_min_ms"] = min(runs)
        row[f"{side}_runs_ms"] = runs
        row[f"{side}_warmup_ms"] = max(r["warmup_ms"] for r in results)
        row[f"{side}_load_s"] = round(statistics.median(r["load_s"] for r in results), 3)
        row[f"{side}_rss_after_load_mb"] = max(r["rss_after_load_mb"] for r in results)
        row[f"{side}_peak_mb"] = max(r["peak_rss_mb"] for r in results)
        row[f"{side}_ru_maxrss_mb"] = max(r["ru_maxrss_mb"] for r in results)
        row[f"{side}_added_mb"] = round(max(r["peak_rss_mb"] - r["rss_after_load_mb"] for r in results), 1)
        row[f"{side}_threads"] = results[0]["threads"]
        row[f"{side}_output_bytes"] = results[0]["output_bytes"]
    for name in ("session_run_ms", "refined_ms"):
        runs = [t for r in rounds for t in r["ours"].get(name, [])]
        if runs:
            row[name] = round(statistics.median(runs), 1)
    if "ours_ms" in row and "rembg_ms" in row:
        row["speedup"] = round(row["rembg_ms"] / row["ours_ms"], 2)
        row["speedup_of_minimums"] = round(row["rembg_min_ms"] / row["ours_min_ms"], 2)
        row["memory_ratio"] = round(row["ours_peak_mb"] / row["rembg_peak_mb"], 3)
        row["added_ratio"] = (
            round(row["ours_added_mb"] / row["rembg_added_mb"], 3) if row["rembg_added_mb"] > 0 else None
        )
        row["meets_speed_target"] = row["speedup"] >= TARGET_SPEEDUP
        row["meets_memory_target"] = row["memory_ratio"] <= TARGET_MEMORY_RATIO
    if "rembg_ms" in row and "session_run_ms" in row:
        # No pipeline that runs this model once can beat rembg by more than this: the model run
        # alone takes session_run_ms on both sides (same file, same onnxruntime, same threads).
        row["speedup_ceiling"] = round(row["rembg_ms"] / row["session_run_ms"], 2)
        row["share_of_ceiling"] = round(row["speedup"] / row["speedup_ceiling"], 2)
    if "rembg_ms" in row and "refined_ms" in row:
        row["refined_speedup"] = round(row["rembg_ms"] / row["refined_ms"], 2)
    return row


def _fmt(value: Any, spec: str) -> str:
    return "error" if value is None else format(value, spec)


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| photo | MP | ours (ms) | rembg (ms) | speedup | ceiling (rembg / bare model run) "
        "| ours refined, the default (ms) | speedup refined | ours peak (MB) | rembg peak (MB) | ours/rembg peak "
        "| added by image, ours / rembg (MB) | CLI ours (s) | CLI rembg (s) | CLI speedup |"
    )
    lines = [head, "|---|" + "---:|" * 14]
    for r in rows:
        cli = r.get("cli", {})
        lines.append(
            f"| {r['case']} | {r['megapixels']:.2f} "
            f"| {_fmt(r.get('ours_ms'), '.0f')} | {_fmt(r.get('rembg_ms'), '.0f')} "
            f"| {_fmt(r.get('speedup'), '.2f')}x{_mark(r.get('meets_speed_target'))} "
            f"| {_fmt(r.get('speedup_ceiling'), '.2f')}x "
            f"| {_fmt(r.get('refined_ms'), '.0f')} | {_fmt(r.get('refined_speedup'), '.2f')}x "
            f"| {_fmt(r.get('ours_peak_mb'), '.0f')} | {_fmt(r.get('rembg_peak_mb'), '.0f')} "
            f"| {_fmt(r.get('memory_ratio'), '.0%')}{_mark(r.get('meets_memory_target'))} "
            f"| {_fmt(r.get('ours_added_mb'), '.0f')} / {_fmt(r.get('rembg_added_mb'), '.0f')} "
            f"| {_fmt(cli.get('ours_s'), '.2f')} | {_fmt(cli.get('rembg_s'), '.2f')} "
            f"| {_fmt(cli.get('speedup'), '.2f')}x{_mark(cli.get('faster'))} |"
        )
    return "\n".join(lines)


def _details(rows: list[dict[str, Any]]) -> str:
    """The second table: what else differs (load, RSS after load, output size, mask agreement, CLI peak)."""
    head = (
        "| photo | load ours / rembg (s) | RSS after load ours / rembg (MB) | PNG ours / rembg (KB) "
        "| alpha IoU | mean abs alpha diff | CLI peak ours / rembg (MB) |"
    )
    lines = [head, "|---|" + "---:|" * 6]
    for r in rows:
        cli = r.get("cli", {})
        kb = [None if r.get(f"{side}_output_bytes") is None else r[f"{side}_output_bytes"] / 1024 for side in SIDES]
        lines.append(
            f"| {r['case']} | {_fmt(r.get('ours_load_s'), '.2f')} / {_fmt(r.get('rembg_load_s'), '.2f')} "
            f"| {_fmt(r.get('ours_rss_after_load_mb'), '.0f')} / {_fmt(r.get('rembg_rss_after_load_mb'), '.0f')} "
            f"| {_fmt(kb[0], ',.0f')} / {_fmt(kb[1], ',.0f')} "
            f"| {_fmt(r.get('alpha_iou'), '.3f')} | {_fmt(r.get('alpha_mean_abs_diff'), '.1f')} "
            f"| {_fmt(cli.get('ours_peak_mb'), '.0f')} / {_fmt(cli.get('rembg_peak_mb'), '.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="our pipeline vs rembg on the same U-2-Net-p model")
    p.add_argument("--runs", type=int, default=5, help="timed warm runs per process, small photos")
    p.add_argument("--runs-large", type=int, default=3, help="timed warm runs per process, the 12 MP photo")
    p.add_argument(
        "--rounds", type=int, default=4, help="processes per side and photo, in ABBA order (default 4: ABBA ABBA)"
    )
    p.add_argument("--cli-runs", type=int, default=3, help="timed command-line runs per side and photo (0: skip)")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--image", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--launch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.launch:
        print(json.dumps(launch(a.command)))
        return 0
    if a.child:
        print(json.dumps(run_child(a.child, a.model, a.image, a.runs, a.save)))
        return 0

    if not _rembg_cli().is_file():
        print(
            f"error: rembg's venv is missing ({BENCH_VENV}); run `make bench-rembg`, which creates it", file=sys.stderr
        )
        return 1
    sys.path.insert(0, str(REPO / "scripts"))
    from fetch_u2netp import ensure_u2netp

    model = ensure_u2netp().resolve()
    # Untimed: a fresh venv compiles its bytecode (and numba its cache) on first import, which took
    # rembg's first run ~50 s here; no measurement should carry that.
    print("priming both venvs (imports) ...", file=sys.stderr, flush=True)
    subprocess.run([str(OURS_PYTHON), "-c", "import handler.cli, handler.render"], cwd=REPO, check=True)
    subprocess.run([str(_bench_python()), "-c", "import rembg.cli"], cwd=REPO, check=True)
    machine = _machine_info()
    load_before = loadavg()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vs-rembg-") as tmp:
        tmpdir = Path(tmp)
        for index, (case, photo, pixels) in enumerate(_cases()):
            from PIL import Image

            with Image.open(photo) as image:
                size = image.size
            runs = a.runs_large if pixels > 4_000_000 else a.runs
            # ABBA: alternate which side goes first, so drift in the machine's load hits both.
            rounds: list[dict[str, dict[str, Any]]] = []
            for r in range(a.rounds):
                order = SIDES if (index + r) % 2 == 0 else SIDES[::-1]
                result: dict[str, dict[str, Any]] = {}
                for side in order:
                    print(f"{case}: {side} warm, round {r + 1}/{a.rounds} ...", file=sys.stderr, flush=True)
                    result[side] = _spawn(side, model, photo, runs, tmpdir / f"{side}.png")
                    if "versions" in result[side]:
                        versions[side] = {**result[side]["versions"], "python": result[side]["python"]}
                rounds.append(result)
            row = _summarise(case, pixels, rounds)
            row["photo"] = str(photo.relative_to(REPO))
            row["size"] = list(size)
            row["runs_per_process"] = runs
            if "ours_ms" in row and "rembg_ms" in row:
                for side in SIDES:
                    problem = _check_cutout(tmpdir / f"{side}.png", size)
                    if problem:
                        row[f"{side}_output_problem"] = problem
                row.update(_agreement(tmpdir / "ours.png", tmpdir / "rembg.png"))

            if a.cli_runs > 0:
                cli: dict[str, Any] = {}
                for side in SIDES:  # priming: bytecode, page cache, numba's cache; reported, not counted
                    print(f"{case}: {side} command line, priming ...", file=sys.stderr, flush=True)
                    first = _time_cli(side, model, photo, tmpdir / f"cli-{side}.png")
                    cli[f"{side}_priming_s"] = round(first["wall_s"], 3) if "wall_s" in first else first["error"]
                samples: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
                for r in range(a.cli_runs):
                    order = SIDES if (index + r) % 2 == 0 else SIDES[::-1]
                    for side in order:
                        print(f"{case}: {side} command line {r + 1}/{a.cli_runs} ...", file=sys.stderr, flush=True)
                        samples[side].append(_time_cli(side, model, photo, tmpdir / f"cli-{side}.png"))
                for side in SIDES:
                    errors = [s["error"] for s in samples[side] if "error" in s]
                    if errors:
                        cli[f"{side}_error"] = errors[0]
                        continue
                    cli[f"{side}_s"] = round(statistics.median(s["wall_s"] for s in samples[side]), 3)
                    cli[f"{side}_runs_s"] = [round(s["wall_s"], 3) for s in samples[side]]
                    cli[f"{side}_peak_mb"] = round(max(s["peak_rss_mb"] for s in samples[side]), 1)
                    cli[f"{side}_launcher_floor_mb"] = round(max(s["floor_mb"] for s in samples[side]), 1)
                    problem = _check_cutout(tmpdir / f"cli-{side}.png", size)
                    if problem:
                        cli[f"{side}_output_problem"] = problem
                if "ours_s" in cli and "rembg_s" in cli:
                    cli["speedup"] = round(cli["rembg_s"] / cli["ours_s"], 2)
                    cli["faster"] = cli["ours_s"] < cli["rembg_s"]
                row["cli"] = cli
            rows.append(row)

    report: dict[str, Any] = {
        "machine": {**machine, "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": loadavg()},
        "versions": versions,
        "model": {
            "file": "u2netp.onnx (scripts/fetch_u2netp.py)",
            "ours": "MODEL_PATH=u2netp.onnx MODEL_OUTPUT=probabilities; handler.render.process, RenderOptions(refine=False) like rembg; refined_ms: RenderOptions() (the default); CLI: the default",
            "rembg": 'new_session("u2net_custom", model_path=u2netp.onnx); rembg.remove(bytes, session=...)',
        },
        "method": {
            "runs_small": a.runs,
            "runs_large": a.runs_large,
            "rounds": a.rounds,
            "cli_runs": a.cli_runs,
            "large_photo": f"samples/{LARGE_SOURCE} cropped to 4:3, Lanczos to {LARGE_SIZE[0]}x{LARGE_SIZE[1]}, "
            f"noise sigma {LARGE_NOISE_SIGMA}, JPEG q{LARGE_QUALITY}",
        },
        "targets": {
            "speedup_at_least": TARGET_SPEEDUP,
            "memory_ratio_at_most": TARGET_MEMORY_RATIO,
            "cli": "ours faster",
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
        "results": rows,
    }
    write_json(a.out, report)
    print(_table(rows))
    print()
    print(_details(rows))
    print(
        f"\nours: onnxruntime {versions.get('ours', {}).get('onnxruntime')}, "
        f"Pillow {versions.get('ours', {}).get('pillow')}; rembg {versions.get('rembg', {}).get('rembg')}: "
        f"onnxruntime {versions.get('rembg', {}).get('onnxruntime')}, Pillow {versions.get('rembg', {}).get('pillow')}"
    )
    print(
        f"load average before/after: {load_before} / {report['machine']['loadavg_1_5_15_after']} "
        f"on {machine['cpu_count']} CPUs ({machine['cpu_model']}); {report['elapsed_s']:.0f} s"
    )
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
