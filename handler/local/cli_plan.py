"""Which file each input of `remove`/`mask` is written to: a named file, a folder tree, or stdout.

`-o` names a file when its suffix is an image's or it is an existing file; then there must be one
input image, since two cutouts cannot share a file (a folder of that name would surprise). `-` is
stdin as an input and stdout as the output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from handler.core.image.formats import FORMATS, OutputFormat, OutputKind, format_named

STDIO = Path("-")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"}
# What a mask written beside its cutout adds to the cutout's name: cat.png -> cat-mask.png.
MASK_SUFFIX = "-mask"


class UsageError(Exception):
    """Arguments that contradict each other: nothing is done, the message says what to change."""


@dataclass(frozen=True)
class Job:
    source: Path  # STDIO: read the image from stdin
    targets: dict[OutputKind, Path]  # STDIO: write the image to stdout
    format: OutputFormat

    @property
    def name(self) -> str:
        """The input as error lines name it."""
        return "stdin" if self.source == STDIO else str(self.source)


def plan(inputs: Sequence[Path], output: Path, fmt: OutputFormat | None, kinds: Sequence[OutputKind]) -> list[Job]:
    """One Job per image; UsageError when the arguments cannot all be honoured."""
    if list(inputs).count(STDIO) > 1:
        raise UsageError("stdin (-) can be read only once")
    if output == STDIO:
        return [_to_stdout(inputs, fmt, kinds)]
    if _names_a_file(output):
        return [_to_file(inputs, output, fmt, kinds)]
    return list(_to_folder(inputs, output, fmt or "png", kinds))


def _names_a_file(output: Path) -> bool:
    return output.suffix.lower() in IMAGE_SUFFIXES or output.is_file()


def _single(inputs: Sequence[Path], output: str) -> Path:
    if len(inputs) != 1 or inputs[0].is_dir():
        what = f"{len(inputs)} inputs" if len(inputs) != 1 else f"the folder {inputs[0]}"
        raise UsageError(f"-o {output} names one file, but {what} can give several images: give a folder for -o")
    return inputs[0]


def _to_stdout(inputs: Sequence[Path], fmt: OutputFormat | None, kinds: Sequence[OutputKind]) -> Job:
    source = _single(inputs, "-")
    if len(kinds) > 1:
        raise UsageError("--mask writes a second image, and stdout takes one: give a file or folder for -o")
    return Job(source, {kinds[0]: STDIO}, fmt or "png")


def _to_file(inputs: Sequence[Path], output: Path, fmt: OutputFormat | None, kinds: Sequence[OutputKind]) -> Job:
    source = _single(inputs, str(output))
    named = format_named(output.suffix) if output.suffix else fmt or "png"
    if named is None:
        raise UsageError(f"-o {output}: cannot write {output.suffix} files; name a .png, .webp or .jpg file")
    if fmt is not None and fmt != named:
        raise UsageError(f"--format {fmt} does not match the output name {output}")
    return Job(source, _targets(output, kinds), named)


def _to_folder(inputs: Sequence[Path], output: Path, fmt: OutputFormat, kinds: Sequence[OutputKind]) -> Iterator[Job]:
    """Folders are walked and their structure kept under `output`."""
    extension = f".{FORMATS[fmt].extension}"
    destination = output.resolve()
    for item in inputs:
        if item == STDIO:
            yield Job(item, _targets(output / f"stdin{extension}", kinds), fmt)
        elif item.is_dir():
            for source in sorted(item.rglob("*")):
                # Never take a previous run's outputs (an output folder inside the input) as inputs.
                if destination in source.resolve().parents:
                    continue
                if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
                    target = (output / source.relative_to(item)).with_suffix(extension)
                    yield Job(source, _targets(target, kinds), fmt)
        else:
            # An explicit file is always attempted: a missing or unreadable one gets its own error line.
            yield Job(item, _targets(output / f"{item.stem}{extension}", kinds), fmt)


def _targets(target: Path, kinds: Sequence[OutputKind]) -> dict[OutputKind, Path]:
    """The command's own output takes the name; a mask made with a cutout (--mask) sits beside it
    as NAME-mask.EXT."""
    return {
        kind: target if kind == kinds[0] else target.with_name(f"{target.stem}{MASK_SUFFIX}{target.suffix}")
        for kind in kinds
    }
