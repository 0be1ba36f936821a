"""The command line: `python -m handler remove|mask|download ...`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from handler.core.errors import BackgroundRemovalError, InvalidParameter
from handler.core.image.formats import OutputKind
from handler.core.image.limits import ImageLimits
from handler.core.model.settings import ModelSettings
from handler.local.cli_options import add_render_flags, flag_error, render_options
from handler.local.cli_plan import STDIO, UsageError, plan


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_program(), description="Background removal with BiRefNet.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    model_options = argparse.ArgumentParser(add_help=False)
    group = model_options.add_argument_group("model (defaults from MODEL_* environment variables)")
    group.add_argument("--model-path", type=Path, help="a local ONNX file; skips every download")
    group.add_argument("--repo", help="Hugging Face repo of a BiRefNet ONNX export")
    group.add_argument("--model-file", help="file inside the repo, e.g. onnx/model_fp16.onnx")
    group.add_argument("--revision", help="branch, tag or commit of the repo")

    kinds: tuple[tuple[str, OutputKind], ...] = (("remove", "cutout"), ("mask", "mask"))
    for name, kind in kinds:
        command = commands.add_parser(name, parents=[model_options], help=f"write the {kind} of each input")
        command.add_argument(
            "inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders; - reads one from stdin"
        )
        command.add_argument(
            "-o",
            "--output",
            type=Path,
            default=Path(f"{kind}s"),
            help=f"output folder (default ./{kind}s); or, for a single input, a file name (out.png) or - for stdout",
        )
        add_render_flags(command, kind)
        if kind == "cutout":
            command.add_argument(
                "--mask",
                action="store_true",
                help="also write the mask beside each cutout (NAME-mask.EXT), from the same inference",
            )
        command.set_defaults(run=_run_images, kind=kind, mask=False)

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
        "invoke",
        parents=[model_options],
        help="run an event file through its entry point in-process and print the Lambda response",
    )
    invoke.add_argument("event", type=Path, metavar="EVENT_FILE", help="a JSON event, e.g. events/s3_put.json")
    invoke.add_argument(
        "--body-output",
        type=Path,
        metavar="FILE",
        help="write a successful API response's decoded body (the image) to this file instead of printing it",
    )
    invoke.add_argument(
        "--local",
        action="store_true",
        help="run it against an embedded S3 (as serve does) holding the buckets the event names, a sample photo "
        "under each key it names, and the output bucket",
    )
    invoke.add_argument(
        "--outputs", type=Path, metavar="FOLDER", help="with --local: copy what the function stored to this folder"
    )
    invoke.set_defaults(run=_run_invoke)

    serve = commands.add_parser(
        "serve", parents=[model_options], help="run the API, the S3 upload trigger and a web page locally"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000; 0 picks a free one)")
    serve.add_argument("--s3-port", type=int, default=0, help="port of the embedded S3 (default: a free one)")
    serve.set_defaults(run=_run_serve)
    return parser


def _program() -> str:
    """What the user typed: `bgremove` (the console script) or `python -m handler`."""
    name = Path(sys.argv[0]).name
    return "python -m handler" if name in ("__main__.py", "") or name.startswith("-") else name


def _run_invoke(args: argparse.Namespace) -> int:
    from handler.local.invoke import run_invoke

    if args.outputs is not None and not args.local:
        return _usage("--outputs copies the embedded S3's output bucket: it goes with --local")
    return run_invoke(
        args.event,
        args.body_output,
        local=args.local,
        fail=_fail,
        outputs=args.outputs,
        model_env=_model_environment(args),
    )


def _run_serve(args: argparse.Namespace) -> int:
    from handler.local.server import serve

    return serve(args.host, args.port, s3_port=args.s3_port, env=_model_environment(args))


def _model_environment(args: argparse.Namespace) -> dict[str, str | None]:
    """The model flags as the MODEL_* variables the functions read (`serve` and `invoke` run them; None:
    unset). As for `remove` (ModelSettings.naming), a hub model named here drops a MODEL_PATH from the
    environment, which would otherwise win over it."""
    hub = {"MODEL_REPO": args.repo, "MODEL_FILE": args.model_file, "MODEL_REVISION": args.revision}
    if args.model_path is not None:
        return {"MODEL_PATH": str(args.model_path)}
    named = {name: value for name, value in hub.items() if value is not None}
    return {**named, "MODEL_PATH": None} if named else {}


def _fail(message: str) -> int:
    """One line on stderr per failure, whatever line breaks the underlying library put in its message."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def _model_settings(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings.from_env().naming(
        path=args.model_path, repo=args.repo, file=args.model_file, revision=args.revision
    )


def _run_download(args: argparse.Namespace) -> int:
    from handler.core.bake.run import bake
    from handler.core.model.store import download_model, sha256_of

    settings = _model_settings(args)
    try:
        if args.output is not None:
            print(bake(settings, args.output).summary())
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
    from handler.core.bake.run import bake
    from handler.core.model.store import LOCAL_BAKED_MODEL, MANIFEST, local_bake_dir

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
    from handler.core.render import process
    from handler.local.background import load_local_model

    kinds: list[OutputKind] = [args.kind, "mask"] if args.mask else [args.kind]
    try:
        options = render_options(args, args.kind)
        jobs = plan(args.inputs, args.output, options.format if args.format is not None else None, kinds)
        for fmt in {job.format for job in jobs}:
            dataclasses.replace(options, format=fmt).check_for(args.kind)
        if any(STDIO in job.targets.values() for job in jobs) and sys.stdout.isatty():
            raise UsageError(
                "refusing to write a binary image to a terminal: redirect stdout (> out.png) or give -o FILE"
            )
        if STDIO in args.inputs and sys.stdin.isatty():
            raise UsageError("- reads an image from stdin, which is a terminal: pipe one in (< photo.jpg)")
    except InvalidParameter as error:
        return _usage(flag_error(error).message)
    except UsageError as error:
        return _usage(str(error))
    if not jobs:
        print("error: no image files found in the inputs", file=sys.stderr)
        return 1
    try:
        model = load_local_model(_model_settings(args))
        model.size_for(options.resolution)  # a fixed-size model refuses another resolution once, not per image
    except BackgroundRemovalError as error:
        return _fail(error.message)
    limits = ImageLimits.from_env()
    failures = 0
    for job in tqdm(jobs, unit="image", disable=len(jobs) < 2 or None, file=sys.stderr):
        try:
            source = sys.stdin.buffer.read() if job.source == STDIO else job.source
            result = process(source, kinds, dataclasses.replace(options, format=job.format), model, limits)
        except BackgroundRemovalError as error:
            failures += 1
            tqdm.write(f"error: {job.name}: {' '.join(error.message.split())}", file=sys.stderr)
            continue
        except OSError as error:  # gone or unreadable since the inputs were listed
            failures += 1
            tqdm.write(f"error: {job.name}: {error.strerror or error}", file=sys.stderr)
            continue
        for kind, target in job.targets.items():
            _write(result.outputs[kind].data, target, announce=len(jobs) < 2)
    return 1 if failures else 0


def _write(data: bytes, target: Path, *, announce: bool) -> None:
    if target == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if announce:
        print(target)


def _usage(message: str) -> int:
    """Arguments that cannot work: one line, and argparse's status for a usage error."""
    _fail(message)
    return 2
