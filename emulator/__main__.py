"""`make lambda`: every event in events/ through both functions, run the way Lambda runs them.

The image root is built from the Dockerfile's steps (cached in .cache/lambda/image by content),
each function runs under awslambdaric in the sandbox against the Runtime API emulator, and S3 is
the demo's local one (moto on 127.0.0.1), holding the samples at the keys the events name.
Prints one line per event; the outputs (the output bucket, and each API response's image) are
copied to demo-output/lambda/. Exits non-zero if an event failed or a function wrote outside
/tmp or connected beyond 127.0.0.1.

Model, as `make demo` chooses it: MODEL_PATH if set; else BiRefNet-lite from the local cache (or
downloaded into it); else U-2-Net-p from a PyPI package (handler.local.model_choice).

Usage: python -m emulator [EVENT.json ...]   (EVENT=events/x.json make lambda)
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from emulator import configuration, events, runner
from emulator.bench import Bench
from emulator.image import REPO_ROOT as ROOT
from emulator.images import cached_image
from emulator.local_s3 import LocalS3

WORK = ROOT / ".cache" / "lambda"
OUTPUT = ROOT / "demo-output" / "lambda"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("events", nargs="*", type=Path, help="event files (default: every event in events/)")
    args = parser.parse_args(argv)
    paths = [path.resolve() for path in args.events] or events.event_files(ROOT / "events")
    step_env, function_env = _model()
    print("image: building the image root (cached by content) ...", flush=True)
    image = cached_image(WORK / "image", step_env=step_env)
    print(f"image: {image.root} (model baked at /opt/model, CMD {image.cmd})", flush=True)
    resources = runner.local_buckets(events.event_files(ROOT / "events"), events.env_vars(ROOT / "local-env.json"))
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    failures = 0
    with LocalS3() as s3:
        runner.stage(s3, paths, (ROOT / "samples").glob("*.jpg"), [resources["OutputBucket"]])
        print(
            f"local S3: {s3.endpoint}  input s3://{resources['InputBucket']}  output s3://{resources['OutputBucket']}"
        )
        shutil.rmtree(WORK / "functions", ignore_errors=True)
        bench = Bench(
            image,
            s3,
            WORK / "functions",
            template=configuration.load_template(ROOT / "template.yaml"),
            resources=resources,
        )
        try:
            functions = {fid: bench.function(fid, environment=function_env) for fid in runner.FUNCTION_FOR.values()}
            for path in paths:
                run = runner.run_event(path, functions)
                print(runner.describe(run), flush=True)
                failures += run.result.error_type is not None
                _keep_api_image(run)
            failures += _report(functions.values())
            _keep_bucket(s3, resources["OutputBucket"])
        finally:
            bench.close()
    print(f"outputs: {OUTPUT}  (logs and strace logs: {WORK / 'functions'})")
    return 1 if failures else 0


def _model() -> tuple[dict[str, str], dict[str, str]]:
    """(the bake step's environment, the functions' extra environment).

    The bake records the model's contract in its manifest (handler.core.model.contract), so the
    functions get only the settings given explicitly, and none for the fallback, which describes itself.
    """
    from handler.core.model.settings import ModelSettings
    from handler.core.model.store import resolve_model_path
    from handler.local.model_choice import local_model_settings
    from scripts.demo import prepare_model  # the demo's choice, so both run the same model

    env = dict(os.environ)
    prepare_model(env)
    named = ModelSettings.from_env(env)
    chosen = local_model_settings(named)
    explicit = (
        {name: env[name] for name in ("MODEL_OUTPUT", "MODEL_MEAN", "MODEL_STD", "MODEL_INPUT_SIZE") if env.get(name)}
        if chosen.path == named.path
        else {}
    )
    path = resolve_model_path(dataclasses.replace(chosen, offline=True))  # downloaded above if it could be
    return {"MODEL_PATH": str(path.resolve()), **explicit}, explicit


def _report(functions: Any) -> int:
    broken = 0
    for function in functions:
        report = function.syscall_report()
        if report.forbidden:
            broken += 1
            print(f"{function.config.name} broke Lambda's rules:\n{report.describe()}")
        if report.bytecode:
            print(
                f"note: {function.config.name} tried {len(report.bytecode)} times to write Python's bytecode cache "
                "under read-only /var/task (precompiling in the image would save that work at each cold start)"
            )
    return broken


def _keep_api_image(run: runner.Run) -> None:
    if run.function != runner.API_FUNCTION or run.result.error_type is not None:
        return
    response = run.result.document
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    if data.startswith(b"{"):
        document = json.loads(data)
        if "image" not in document:
            return
        data = base64.b64decode(document["image"])
    extension = "webp" if data[8:12] == b"WEBP" else "png" if data.startswith(b"\x89PNG") else "jpg"
    (OUTPUT / "api").mkdir(exist_ok=True)
    (OUTPUT / "api" / f"{run.event.stem}.{extension}").write_bytes(data)


def _keep_bucket(s3: LocalS3, bucket: str) -> None:
    client = s3.client()
    for key in s3.keys(bucket):
        target = OUTPUT / bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main(sys.argv[1:]))
