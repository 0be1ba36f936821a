"""Where the command line writes: one file per `-o FILE` (never a folder of that name), stdin and
stdout with `-` (bytes as they are, never to a terminal), and the installed `bgremove` script."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.graphs import GraphFile
from tests.helpers.cli import CHILD_TIMEOUT_S, Cli, child_env, opened, photo, red_graph, save

BGREMOVE = Path(sys.executable).parent / "bgremove"

Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def run(tmp_path: Path, graph_file: GraphFile) -> Run:
    """The command line with bytes in and out: `run(*args, stdin=..., stdout=...)`."""
    env = child_env(graph_file(red_graph()))

    def call(
        *args: str,
        program: tuple[str, ...] = (sys.executable, "-m", "handler"),
        input: bytes | None = None,  # noqa: A002 - subprocess.run's own name for it
        stdout: int = subprocess.PIPE,
        stderr: int = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*program, *args],
            cwd=tmp_path,
            env=env,
            input=input,
            stdout=stdout,
            stderr=stderr,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )

    return call


@pytest.mark.parametrize(
    ("inputs", "output"),
    [
        pytest.param(("one.jpg", "two.jpg"), "two.png", id="two-files"),
        pytest.param(("photos",), "all.webp", id="a-folder"),
        pytest.param(("one.jpg", "two.jpg"), "existing", id="an-existing-file"),
    ],
)
def test_many_inputs_into_one_file_is_refused(cli: Cli, tmp_path: Path, inputs: tuple[str, ...], output: str) -> None:
    # GIVEN two images (and a folder of them), and maybe a file already at the output name
    for name in ("one.jpg", "two.jpg", "photos/a.jpg", "photos/b.jpg"):
        save(photo(20, 20, 1), tmp_path / name)
    if output == "existing":
        (tmp_path / output).write_bytes(b"keep me")

    # WHEN the many images are sent to one file
    result = cli("remove", *inputs, "-o", output)

    # THEN one line says why, with a usage status, and nothing is written (no folder of that name)
    assert result.code == 2
    assert len(result.stderr_lines) == 1 and result.stderr_lines[0].startswith(f"error: -o {output} names one file")
    assert not (tmp_path / output).is_dir()
    if output == "existing":
        assert (tmp_path / output).read_bytes() == b"keep me"


def test_an_output_name_of_an_unwritable_format_is_refused(cli: Cli, tmp_path: Path) -> None:
    save(photo(20, 20, 1), tmp_path / "in.jpg")

    result = cli("remove", "in.jpg", "-o", "out.gif")

    assert result.code == 2
    assert result.stderr_lines == ["error: -o out.gif: cannot write .gif files; name a .png, .webp or .jpg file"]
    assert not (tmp_path / "out.gif").exists()


def test_stdin_to_stdout_is_the_same_cutout_as_files(run: Run, tmp_path: Path) -> None:
    # GIVEN a JPEG, cut out file to file
    source = save(photo(48, 32, 3), tmp_path / "in.jpg", quality=90)
    assert run("remove", "in.jpg", "-o", "file.png").returncode == 0

    # WHEN the same bytes go through stdin and stdout
    piped = run("remove", "-", "-o", "-", input=source.read_bytes())

    # THEN stdout is the PNG alone, with the same pixels, and stderr is quiet
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""
    image = Image.open(io.BytesIO(piped.stdout))
    assert image.format == "PNG"
    assert np.array_equal(np.asarray(image), np.asarray(opened(tmp_path / "file.png")))


def test_stdout_takes_the_format_flag(run: Run, tmp_path: Path) -> None:
    source = save(photo(48, 32, 3), tmp_path / "in.png")

    piped = run("mask", "-", "-o", "-", "--format", "webp", input=source.read_bytes())

    assert piped.returncode == 0, piped.stderr
    assert Image.open(io.BytesIO(piped.stdout)).format == "WEBP"


def test_stdin_into_a_folder(run: Run, tmp_path: Path) -> None:
    source = save(photo(48, 32, 3), tmp_path / "in.png")

    result = run("remove", "-", "-o", "out", "--mask", input=source.read_bytes())

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["stdin-mask.png", "stdin.png"]


def test_a_binary_image_is_not_written_to_a_terminal(run: Run, tmp_path: Path) -> None:
    # GIVEN stdout is a terminal
    source = save(photo(16, 16, 4), tmp_path / "in.png")
    controller, terminal = pty.openpty()
    try:
        result = run("remove", "in.png", "-o", "-", stdout=terminal, stderr=subprocess.PIPE)
        os.set_blocking(controller, False)
        try:
            shown = os.read(controller, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(terminal)
        os.close(controller)

    # THEN it is refused in one line, and nothing reached the terminal
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "error: refusing to write a binary image to a terminal: redirect stdout (> out.png) or give -o FILE"
    ]
    assert shown == b""
    assert source.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("-", "-", "-o", "out"), "stdin (-) can be read only once", id="stdin-twice"),
        pytest.param(("a.png", "b.png", "-o", "-"), "-o - names one file", id="many-to-stdout"),
        pytest.param(("a.png", "-o", "-", "--mask"), "stdout takes one", id="mask-to-stdout"),
    ],
)
def test_impossible_stdio_requests_are_refused(cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    for name in ("a.png", "b.png"):
        save(photo(16, 16, 5), tmp_path / name)

    result = cli("remove", *args)

    assert result.code == 2
    assert len(result.stderr_lines) == 1 and message in result.stderr_lines[0]


def test_the_installed_bgremove_script(run: Run, tmp_path: Path) -> None:
    # GIVEN the console script `make venv` installs
    assert BGREMOVE.is_file(), "pip install -e . installs bgremove beside the interpreter"
    save(photo(30, 20, 6), tmp_path / "in.jpg")

    # WHEN run by that name
    usage = run("--help", program=(str(BGREMOVE),))
    result = run("remove", "in.jpg", "-o", "out.webp", "--bg-color", "#ffffff", program=(str(BGREMOVE),))

    # THEN its help calls it by that name, and it does the work
    assert usage.returncode == 0 and usage.stdout.decode().startswith("usage: bgremove ")
    assert result.returncode == 0, result.stderr
    out = opened(tmp_path / "out.webp")
    assert (out.format, out.size) == ("WEBP", (30, 20))
