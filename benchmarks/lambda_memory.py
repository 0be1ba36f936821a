"""Peak memory of one photo through each function, run the way Lambda runs them, with the default model's cost.

Usage::

    make fixtures                                # once: the dev-only torch venv that builds the stand-in
    .venv/bin/python benchmarks/lambda_memory.py [--sizes tiny,12mp,64mp] [--rounds 2]

The model is benchmarks/deform_standin.py's stand-in for BiRefNet-lite (its Swin-T-like backbone
and 20 deformable convolutions at 1024x1024), baked by the image's own build step into the image
root the emulator builds from the Dockerfile (emulator/: awslambdaric against a local Runtime API,
in the read-only bubblewrap sandbox, as Lambda's user, with Lambda's environment for the
template's MemorySize, and the local S3). Each case is a fresh execution environment (a cold start,
then one invocation): the jobs function on an S3 put notification for the photo, and the API
function on POST /remove with the photo inline where it fits in Lambda's 6 MB request. The figure
is the runtime process's peak RSS (VmHWM of the sandboxed interpreter: interpreter, imports, the
session and its arena, the photo), read after each invocation; the cold start alone (the session
loaded, no photo) from S3's test event, which asks for nothing. `--invocations N` keeps one
environment for N invocations of the same photo (a warm environment's peak can climb).
`--context` runs another checkout's Dockerfile and code (this checkout's template and --memory
still configure the functions), `--baked` serves a given bake as /opt/model.

Photos: samples/astronaut.jpg enlarged with seeded sensor-like noise, JPEG quality 90 (as
large_photo.py makes them): 64x64, 12 MP (4000x3000), 64 MP (9236x6927, the largest 4:3 photo within
the default MAX_INPUT_PIXELS). The API gets a copy without noise at quality 85 where the noisy one
is too large to send inline. Prints a markdown table; adds the run (by its --label) to
benchmarks/results/lambda_memory.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.deform_standin import FIXTURES_PYTHON, WORK
from benchmarks.measure import ROOT, SAMPLES, machine_info, write_json
from emulator.sandbox import INTERPRETER

RESULTS = ROOT / "benchmarks" / "results" / "lambda_memory.json"
CACHE = ROOT / ".cache" / "bench"
SIZES = {"tiny": (64, 64), "12mp": (4000, 3000), "64mp": (9236, 6927)}
STANDIN = WORK / "deform_standin_1024.onnx"
IMAGE_CACHE = ROOT / ".cache" / "lambda-memory"
INPUT_KEY = "uploads/photo.jpg"
NO_PHOTO = ROOT / "events" / "s3_test_event.json"
# What an inline request may carry: Lambda's 6 MB event, less the event's own fields, as base64.
INLINE_LIMIT = 4_400_000


def photo(name: str, *, noise: bool = True, quality: int = 90) -> bytes:
    """A photo-like JPEG of the named size (the astronaut sample enlarged), made once and cached."""
    path = CACHE / f"lambda_{name}_{'noise' if noise else 'smooth'}_q{quality}.jpg"
    if path.exists():
        return path.read_bytes()
    import numpy as np
    from PIL import Image

    image = Image.open(SAMPLES / "astronaut.jpg").convert("RGB").resize(SIZES[name], Image.Resampling.BICUBIC)
    if noise:
        pixels = np.asarray(image).astype(np.int16)
        pixels += np.random.default_rng(0).integers(-6, 7, pixels.shape, dtype=np.int16)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _runtime_pid(root_pid: int) -> int:
    """The sandboxed interpreter (awslambdaric) among the descendants of strace/bwrap `root_pid`."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            argv = []
        if argv[:3] == [INTERPRETER.encode(), b"-m", b"awslambdaric"]:  # not strace's or bwrap's command line
            return pid
        pending.extend(children.get(pid, []))
    raise RuntimeError(f"no awslambdaric process under {root_pid}")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/{pid}/status")


def _api_event(data: bytes) -> bytes:
    event = json.loads((ROOT / "events" / "api_v2_remove.json").read_text())
    event["body"] = base64.b64encode(data).decode()
    return json.dumps(event).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated, among " + ", ".join(SIZES))
    parser.add_argument("--rounds", type=int, default=1, help="fresh environments per case (the peak varies by run)")
    parser.add_argument("--functions", default="jobs,api", help="jobs, api or both")
    parser.add_argument(
        "--invocations", type=int, default=1, help="invocations per environment (the first is the cold one)"
    )
    parser.add_argument("--memory", type=int, help="MemorySize parameter (default: the template's)")
    parser.add_argument("--label", default="", help="recorded with the results (e.g. before/after)")
    parser.add_argument(
        "--baked",
        type=Path,
        help="a bake of the stand-in (python -m handler.core.bake DIR) served as /opt/model instead of the image's "
        "own: the bake keeps the pre-optimised graph or not by which loaded faster, and the two peak differently",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--context", type=Path, default=ROOT, help="the checkout whose Dockerfile and code are run (e.g. main's)"
    )
    args = parser.parse_args(argv)

    from emulator import configuration, events, runner
    from emulator.bench import Bench
    from emulator.images import cached_image
    from emulator.local_s3 import LocalS3
    from handler.local.upload_trigger import s3_put_event

    if not STANDIN.exists():
        import subprocess

        if not FIXTURES_PYTHON.exists():
            raise SystemExit("the stand-in is made with torch: run `make fixtures` first")
        subprocess.run(
            [str(FIXTURES_PYTHON), str(ROOT / "benchmarks" / "deform_standin.py"), "--build", str(STANDIN)],
            check=True,
        )
    print("image: building the image root with the stand-in baked (cached by content) ...", flush=True)
    context = args.context.resolve()
    image = cached_image(
        IMAGE_CACHE / ("image" if context == ROOT else "image-other"),
        context=context,
        step_env={"MODEL_PATH": str(STANDIN)},
    )
    baked = args.baked.resolve() if args.baked else image.root / "opt" / "model"
    manifest = json.loads((baked / "model.json").read_text())
    binds = {baked: "/opt/model"} if args.baked else None
    template = configuration.load_template(ROOT / "template.yaml")
    parameters = {"MemorySize": str(args.memory)} if args.memory else {}
    resources = runner.local_buckets(events.event_files(ROOT / "events"), events.env_vars(ROOT / "local-env.json"))
    sizes = args.sizes.split(",")
    rows: list[dict[str, Any]] = []
    with LocalS3() as s3:
        s3.create_buckets(resources["InputBucket"], resources["OutputBucket"])
        bench = Bench(
            image, s3, IMAGE_CACHE / "functions", template=template, resources=resources, parameters=parameters
        )
        client = s3.client()

        def clear_outputs() -> None:
            """So that the next photo is processed, not skipped as up to date."""
            for key in s3.keys(resources["OutputBucket"]):
                client.delete_object(Bucket=resources["OutputBucket"], Key=key)

        def measure(function_id: str, label: str, payload: bytes | None, *, synchronous: bool) -> dict[str, Any]:
            function = bench.function(function_id, name=f"memory-{function_id}-{label}-{len(rows)}", extra_binds=binds)
            try:
                peaks = []
                for _ in range(args.invocations):
                    started = time.perf_counter()
                    # No photo: the cold start (the session loaded) and S3's test event, which asks for nothing.
                    result = function.invoke(payload or NO_PHOTO.read_bytes(), synchronous=synchronous)
                    seconds = time.perf_counter() - started
                    assert function._environment is not None
                    pid = _runtime_pid(function._environment.process.pid)
                    peaks.append(round(_status_mb(pid, "VmHWM")))
                    clear_outputs()
            finally:
                function.close()
            if result.error_type is not None:
                outcome = f"ERROR {result.error_type}"
            else:
                document = result.document
                outcome = (
                    f"HTTP {document['statusCode']}"
                    if "statusCode" in document
                    else f"processed {document.get('processed', 0)}, failed {document.get('failed', 0)}"
                )
            return {
                "function": function_id,
                "memory_mb": function.config.memory_mb,
                "peak_mb": peaks[-1],
                "peaks_by_invocation_mb": peaks,
                "seconds": round(seconds, 2),
                "outcome": outcome,
            }

        cases: list[tuple[str, str, Callable[[], tuple[bytes | None, bool, int, int]]]] = []

        def jobs_case(name: str) -> Callable[[], tuple[bytes | None, bool, int, int]]:
            def prepare() -> tuple[bytes | None, bool, int, int]:
                data = photo(name)
                clear_outputs()
                put = client.put_object(Bucket=resources["InputBucket"], Key=INPUT_KEY, Body=data)
                event = s3_put_event(resources["InputBucket"], INPUT_KEY, len(data), put["ETag"].strip('"'), 1)
                width, height = SIZES[name]
                return json.dumps(event).encode(), False, len(data), width * height

            return prepare

        def api_case(name: str) -> Callable[[], tuple[bytes | None, bool, int, int]]:
            def prepare() -> tuple[bytes | None, bool, int, int]:
                data = photo(name)
                if len(data) > INLINE_LIMIT:
                    data = photo(name, noise=False, quality=85)
                if len(data) > INLINE_LIMIT:
                    raise SystemExit(f"the {name} photo does not fit inline ({len(data):,} bytes)")
                clear_outputs()
                width, height = SIZES[name]
                return _api_event(data), True, len(data), width * height

            return prepare

        wanted = args.functions.split(",")
        for _ in range(args.rounds):
            cases.append(("JobsFunction", "none", lambda: (None, False, 0, 0)))
            for name in sizes:
                if "jobs" in wanted:
                    cases.append(("JobsFunction", name, jobs_case(name)))
                if "api" in wanted:
                    cases.append(("ApiFunction", name, api_case(name)))
        try:
            for function_id, name, prepare in cases:
                payload, synchronous, input_bytes, pixels = prepare()
                row = {
                    "photo": name,
                    "input_bytes": input_bytes,
                    "pixels": pixels,
                    **measure(function_id, name, payload, synchronous=synchronous),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            bench.close()

    print()
    print("| function | photo | MemorySize | peak RSS (MB) | headroom (MB) | outcome | seconds (under load) |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    for row in rows:
        print(
            f"| {row['function']} | {row['photo']} | {row['memory_mb']} | {row['peak_mb']} | "
            f"{row['memory_mb'] - row['peak_mb']} | {row['outcome']} | {row['seconds']} |"
        )
    run = {
        "label": args.label or ("this checkout" if context == ROOT else str(context)),
        "this_checkout": context == ROOT,
        "machine": machine_info(),
        "baked": {
            "sha256": manifest["sha256"],
            "native_deform": manifest["native_deform"]["applied"],
            "preoptimised": manifest["preoptimised"],
        },
        "results": rows,
    }
    # Each run is kept beside the others (a run of the same label replaces it): before and after,
    # each bake, cold and warm environments side by side in one file.
    report = json.loads(args.output.read_text()) if args.output.exists() else {}
    runs = [kept for kept in report.get("runs", []) if kept["label"] != run["label"]]
    write_json(
        args.output,
        {
            "model": "benchmarks/deform_standin.py's stand-in, baked by the image's build step",
            "inputs": {name: list(size) for name, size in SIZES.items()},
            "runs": [*runs, run],
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
