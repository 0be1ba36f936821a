"""The command line: `python -m handler remove|mask|download ...`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from handler.config import ImageLimits, ModelSettings
from handler.errors import BackgroundRemovalError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"}
OUTPUT_SUFFIXES = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}


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
            "-o", "--output", type=Path, default=Path(f"{kind}s"),
            help=f"output folder (default ./{kind}s), or a file name for a single input",
        )
        command.add_argument("--format", choices=["png", "webp"], default=None, help="output format (default png)")
        command.set_defaults(run=_run_images, kind=kind)

    download = commands.add_parser("download", parents=[model_options], help="fetch and verify the model (build step)")
    download.set_defaults(run=_run_download)
    return parser


def _model_settings(args: argparse.Namespace) -> ModelSettings:
    settings = ModelSettings.from_env()
    overrides = {
        "path": args.model_path,
        "repo": args.repo,
        "file": args.model_file,
        "revision": args.revision,
    }
    return dataclasses.replace(settings, **{key: value for key, value in overrides.items() if value is not None})


def _run_download(args: argparse.Namespace) -> int:
    from handler.model_store import download_model, verify_checksum

    settings = _model_settings(args)
    try:
        path = download_model(settings)
    except BackgroundRemovalError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    print(f"{path}  sha256={verify_checksum(path, settings.sha256)}")
    return 0


def _run_images(args: argparse.Namespace) -> int:
    # Imported here so `--help` and `download` stay fast and do not load onnxruntime.
    from handler.background import compose_cutout, load_model, segment
    from handler.imaging import encode, load_picture

    jobs = list(_plan(args.inputs, args.output, args.format))
    if not jobs:
        print("error: no image files found in the inputs", file=sys.stderr)
        return 1
    try:
        model = load_model(_model_settings(args))
    except BackgroundRemovalError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    limits = ImageLimits.from_env()
    failures = 0
    for source, target, fmt in tqdm(jobs, unit="image", disable=len(jobs) < 2 or None, file=sys.stderr):
        try:
            picture = load_picture(source, limits)
            alpha = segment(picture, model)
            if args.kind == "mask":
                data = encode(alpha, fmt)
            else:
                data = encode(compose_cutout(picture, alpha), fmt, icc_profile=picture.icc_profile)
        except BackgroundRemovalError as error:
            failures += 1
            tqdm.write(f"error: {source}: {error.message}", file=sys.stderr)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if len(jobs) < 2:
            print(target)
    return 1 if failures else 0


def _plan(inputs: list[Path], output: Path, fmt: str | None) -> Iterator[tuple[Path, Path, str]]:
    """(source, target, format) per image. Folders are walked and their structure kept under OUTPUT."""
    single_file_target = (
        len(inputs) == 1 and not inputs[0].is_dir() and output.suffix.lower() in OUTPUT_SUFFIXES
    )
    if single_file_target:
        yield inputs[0], output, fmt or OUTPUT_SUFFIXES[output.suffix.lower()]
        return
    fmt = fmt or "png"
    for item in inputs:
        if item.is_dir():
            for source in sorted(item.rglob("*")):
                if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
                    yield source, (output / source.relative_to(item)).with_suffix(f".{fmt}"), fmt
        else:
            # An explicit file is always attempted: a missing or unreadable one gets its own error line.
            yield item, output / f"{item.stem}.{fmt}", fmt
