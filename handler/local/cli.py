"""The command line: `python -m handler remove|mask|download ...`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from handler.core.errors import BackgroundRemovalError
from handler.core.formats import TRANSPARENT_FORMATS, OutputFormat, format_named
from handler.core.settings import RESOLUTIONS, ImageLimits, ModelSettings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m handler", description="Background removal with BiRefNet.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    model_options = argparse.ArgumentParser(add_help=False)
    group = model_options.add_argument_group("model (defaults from MODEL_* environment variables)")
    group.add_argument("--model-path", type=Path, help="a local ONNX file; skips every download")
    group.add_argument("--repo", help="Hugging Face repo of a BiRefNet ONNX export")
    group.add_argument("--model-file", help="file inside the repo, e.g. onnx/model_fp16.onnx")
    group.add_argument("--revision", help="branch, tag or commit of the repo")

    for name, kind in (("remove", "cutout"), ("mask", "mask")):
        command = commands.add_parser(name, parents=[model_options], help=f"write the {kind} of each input")
        command.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
        command.add_argument(
            "-o",
            "--output",
            type=Path,
            default=Path(f"{kind}s"),
            help=f"output folder (default ./{kind}s), or a file name for a single input",
        )
        command.add_argument("--format", choices=TRANSPARENT_FORMATS, default=None, help="output format (default png)")
        command.add_argument(
            "--resolution",
            type=int,
            choices=RESOLUTIONS,
            default=None,
            help="model input size for exports with a dynamic input: smaller is faster, coarser (default MODEL_INPUT_SIZE)",
        )
        if kind == "cutout":
            command.add_argument(
                "--keep-metadata",
                action="store_true",
                help="copy the input's EXIF (incl. GPS) and XMP to the cutout; off by default",
            )
            command.add_argument(
                "--refine",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="estimate the foreground colour of semi-transparent edge pixels (default: on)",
            )
        command.set_defaults(run=_run_images, kind=kind, refine=None, keep_metadata=False)

    download = commands.add_parser("download", parents=[model_options], help="fetch and verify the model (build step)")
    download.add_argument(
        "--output",
        type=Path,
        default=None,
        help="also bake it into this folder as model.onnx (deformable convolutions made native when verified, "
        "pre-optimised when that loads faster) + model.json",
    )
    download.set_defaults(run=_run_download)

    invoke = commands.add_parser(
        "invoke", help="run an event file through its entry point in-process and print the Lambda response"
    )
    invoke.add_argument("event", type=Path, metavar="EVENT_FILE", help="a JSON event, e.g. events/s3_put.json")
    invoke.add_argument("--body-output", type=Path, help="also write an API response's decoded body to this file")
    invoke.set_defaults(run=_run_invoke)

    serve = commands.add_parser(
        "serve", parents=[model_options], help="run the API, the S3 upload trigger and a web page locally"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000; 0 picks a free one)")
    serve.add_argument("--s3-port", type=int, default=0, help="port of the embedded S3 (default: a free one)")
    serve.set_defaults(run=_run_serve)
    return parser


def _run_invoke(args: argparse.Namespace) -> int:
    """The no-Docker counterpart of `sam local invoke`: same entry points, same event files."""
    import base64
    import contextlib
    import importlib
    import json

    from handler.local.context import API_TIMEOUT_SECONDS, JOBS_TIMEOUT_SECONDS, LocalLambdaContext

    try:
        event = json.loads(args.event.read_text())
    except (OSError, ValueError) as error:
        return _fail(f"cannot read the event {args.event}: {error}")
    is_api = isinstance(event, dict) and ("httpMethod" in event or "http" in event.get("requestContext", {}))
    context = LocalLambdaContext(
        function_name="api" if is_api else "jobs",
        timeout_seconds=API_TIMEOUT_SECONDS if is_api else JOBS_TIMEOUT_SECONDS,
    )
    # Logs and EMF metrics go to stderr here, so stdout is only the response (pipe it to jq).
    with contextlib.redirect_stdout(sys.stderr):
        module = importlib.import_module("handler.api" if is_api else "handler.jobs")
        response = module.lambda_handler(event, context)
    print(json.dumps(response, indent=2))
    if args.body_output is not None and isinstance(response, dict) and "body" in response:
        body = response["body"]
        args.body_output.write_bytes(base64.b64decode(body) if response.get("isBase64Encoded") else body.encode())
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from handler.local.server import serve

    model = {
        "MODEL_PATH": args.model_path,
        "MODEL_REPO": args.repo,
        "MODEL_FILE": args.model_file,
        "MODEL_REVISION": args.revision,
    }
    env = {name: str(value) for name, value in model.items() if value is not None}
    return serve(args.host, args.port, s3_port=args.s3_port, env=env)


def _fail(message: str) -> int:
    """One line on stderr per failure, whatever line breaks the underlying library put in its message."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def _model_settings(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings.from_env().naming(
        path=args.model_path, repo=args.repo, file=args.model_file, revision=args.revision
    )


def _run_download(args: argparse.Namespace) -> int:
    from handler.core.bake import bake
    from handler.core.model_store import download_model, sha256_of

    settings = _model_settings(args)
    try:
        if args.output is not None:
            baked = bake(settings, args.output)
            deform = "applied" if baked.native_deform["applied"] else "not applied"
            print(
                f"{baked.path}  source_sha256={baked.source_sha256}  preoptimised={baked.preoptimised}  native_deform={deform}"
            )
            print(f"native DeformConv: {baked.native_deform['reason']}")
        else:
            path = download_model(settings)
            print(f"{path}  sha256={sha256_of(path)}")
            _bake_for_local_runs(settings, path)
    except BackgroundRemovalError as error:
        return _fail(error.message)
    return 0


def _bake_for_local_runs(settings: ModelSettings, path: Path) -> None:
    """Bake the downloaded hub file beside the cache, so local runs get what the image gets.

    Best effort: the download itself succeeded, so a bake that cannot be made (a file onnxruntime
    cannot load, say) leaves the plain download in use and says so on stderr.
    """
    from handler.core.bake import bake
    from handler.core.model_store import LOCAL_BAKED_MODEL, MANIFEST, local_bake_dir

    folder = local_bake_dir(settings, path)
    if folder is None:
        return
    if (folder / LOCAL_BAKED_MODEL).is_file() and (folder / MANIFEST).is_file():
        print(f"local runs use {folder / LOCAL_BAKED_MODEL} (baked before)", file=sys.stderr)
        return
    print(
        f"baking {path.name} for local runs into {folder} (once; checking a rewrite runs the model a few times)...",
        file=sys.stderr,
    )
    try:
        # The file just downloaded and verified, as a local path: no second request to the hub.
        baked = bake(dataclasses.replace(settings, path=path), folder)
    except Exception as error:  # noqa: BLE001 - onnxruntime and onnx raise their own untyped errors for unusable files
        print(f"note: local runs use the download as is; it could not be baked: {error}", file=sys.stderr)
        return
    print(f"local runs use {baked.path}; native DeformConv: {baked.native_deform['reason']}", file=sys.stderr)


def _run_images(args: argparse.Namespace) -> int:
    # Imported here so `--help` and `download` stay fast and do not load onnxruntime.
    from handler.core.background import load_local_model
    from handler.core.options import RenderOptions
    from handler.core.render import process

    jobs = list(_plan(args.inputs, args.output, args.format))
    if not jobs:
        print("error: no image files found in the inputs", file=sys.stderr)
        return 1
    try:
        model = load_local_model(_model_settings(args))
        model.size_for(args.resolution)  # a fixed-size model refuses another resolution once, not per image
    except BackgroundRemovalError as error:
        return _fail(error.message)
    limits = ImageLimits.from_env()
    failures = 0
    for source, target, fmt in tqdm(jobs, unit="image", disable=len(jobs) < 2 or None, file=sys.stderr):
        options = RenderOptions(
            format=fmt, keep_metadata=args.keep_metadata, resolution=args.resolution, refine=args.refine
        )
        try:
            result = process(source, [args.kind], options, model, limits)
        except BackgroundRemovalError as error:
            failures += 1
            tqdm.write(f"error: {source}: {' '.join(error.message.split())}", file=sys.stderr)
            continue
        except OSError as error:  # gone or unreadable since the inputs were listed
            failures += 1
            tqdm.write(f"error: {source}: {error.strerror or error}", file=sys.stderr)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(result.outputs[args.kind].data)
        if len(jobs) < 2:
            print(target)
    return 1 if failures else 0


def _plan(inputs: list[Path], output: Path, fmt: OutputFormat | None) -> Iterator[tuple[Path, Path, OutputFormat]]:
    """(source, target, format) per image. Folders are walked and their structure kept under OUTPUT."""
    named = format_named(output.suffix) if output.suffix else None
    if len(inputs) == 1 and not inputs[0].is_dir() and named is not None:
        if fmt is not None and fmt != named:
            raise SystemExit(f"error: --format {fmt} does not match the output name {output}")
        yield inputs[0], output, named
        return
    fmt = fmt or "png"
    destination = output.resolve()
    for item in inputs:
        if item.is_dir():
            for source in sorted(item.rglob("*")):
                # Never take a previous run's outputs (an output folder inside the input) as inputs.
                if destination in source.resolve().parents:
                    continue
                if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
                    yield source, (output / source.relative_to(item)).with_suffix(f".{fmt}"), fmt
        else:
            # An explicit file is always attempted: a missing or unreadable one gets its own error line.
            yield item, output / f"{item.stem}.{fmt}", fmt
