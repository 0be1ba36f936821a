"""README's local part, run as written: every shell line and Python block before "## Deploy".

Each line runs in a fresh shell (`bash -c`, a system PATH without the venv, a HOME of its own) in a
view of the checkout after the two set-up commands (tests/helpers/readme.py: the code, .venv and
.cache linked, samples/ and events/ copied), on a machine without the model hub (HF_ENDPOINT is a
closed port on 127.0.0.1), so the local tools use the U-2-Net-p fallback that `make test` fetched,
saying so in one `model:` line. Lines that talk to the local run get the demo, started as the
README starts it (`make demo PORT=...`, on a free port instead of its example's). `make test` is
not run: it is what runs this.

Each line must succeed without a traceback, write only where git ignores it, and show what it
claims on the samples (the output's size for --max-size, GPS for --keep-metadata, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.exif import LATITUDE, latitude
from tests.helpers import readme

# Generous: a safety net against a hung child, not a timing assertion.
LINE_TIMEOUT_S = 300
DEMO_START_TIMEOUT_S = 300
# The address the README's examples use for the local run, and the line that starts it.
README_DEMO = "127.0.0.1:3000"
DEMO_LINE = re.compile(r"^make demo PORT=(\d+)$")
BANNER_END = "Ctrl-C stops it"
# The set-up commands themselves: `make test` is this run; the demo runs once for the lines that need it.
SETUP = re.compile(r"^make (demo|test)\b")


@dataclass(frozen=True)
class Example:
    section: str
    language: str
    code: str

    @property
    def needs_demo(self) -> bool:
        return README_DEMO in self.code

    def __str__(self) -> str:
        return f"{self.section}: {self.code.splitlines()[0][:80]}"


def _examples() -> list[Example]:
    found = []
    for block in readme.blocks(readme.parts()[0]):
        if block.language == "bash":
            found += [Example(block.section, "bash", line) for line in block.lines if not SETUP.match(line)]
        elif block.language == "python":
            found.append(Example(block.section, "python", block.text))
    return found


EXAMPLES = _examples()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fresh_shell(home: Path, no_hub: int) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": readme.FRESH_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HF_ENDPOINT": f"http://127.0.0.1:{no_hub}",
    }


@dataclass
class Demo:
    port: int
    output: list[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, u2netp_path: Path) -> Iterator[Demo]:
    """The local run, started as the README starts it on another port, until the module's lines are done."""
    (line,) = [line for block in readme.blocks(readme.parts()[0]) for line in block.lines if DEMO_LINE.match(line)]
    port = _closed_port()
    view = readme.checkout_view(tmp_path_factory.mktemp("readme-demo"))
    process = subprocess.Popen(
        ["bash", "-c", DEMO_LINE.sub(f"make demo PORT={port}", line)],
        cwd=view,
        env=_fresh_shell(view / "home", _closed_port()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for text in process.stdout:
            output.append(text.rstrip("\n"))
            lines.put(text)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while (text := lines.get(timeout=DEMO_START_TIMEOUT_S)) is not None and BANNER_END not in text:
            pass
        assert text is not None, "the demo stopped before its banner:\n" + "\n".join(output[-30:])
        yield Demo(port, output)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a demo that failed to start has gone already
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the banner says
        process.wait(timeout=60)


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_readme_local_example_runs_as_written(
    example: Example, request: pytest.FixtureRequest, tmp_path: Path, u2netp_path: Path
) -> None:
    # GIVEN a fresh shell in the checkout after the two set-up commands, without the hub
    view = readme.checkout_view(tmp_path / "checkout")
    env = _fresh_shell(tmp_path / "home", _closed_port())
    code = example.code
    if example.needs_demo:
        code = code.replace(README_DEMO, f"127.0.0.1:{request.getfixturevalue('demo').port}")
    before = readme.files_in(view)

    # WHEN it runs as written
    if example.language == "bash":
        command = ["bash", "-c", code]
        stdin = None
    else:  # "From the checkout, with .venv/bin/python"
        command, stdin = [".venv/bin/python", "-"], code
    result = subprocess.run(
        command, cwd=view, env=env, input=stdin, capture_output=True, text=True, timeout=LINE_TIMEOUT_S
    )

    # THEN it succeeds, quietly: no traceback, at most the one line that names the fallback model
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    model_lines = [line for line in result.stderr.splitlines() if line.startswith("model:")]
    assert len(model_lines) <= 1, model_lines
    if re.match(r"^\.venv/bin/bgremove (remove|mask|invoke)", code) or example.language == "python":
        assert model_lines and "U-2-Net-p" in model_lines[0], result.stderr[-2000:]
    # AND it wrote only where git ignores it (never into the checkout's own files)
    written = sorted(readme.files_in(view) - before)
    assert written, "the example wrote nothing"
    assert _not_ignored(written, tmp_path / "gitignore") == []
    # AND it shows what it claims
    if example.language == "bash":
        _check_claims(code, view, result.stdout)


def _not_ignored(paths: list[str], scratch: Path) -> list[str]:
    """The paths the checkout's .gitignore does not ignore (asked of git, in a scratch repository holding
    only that file, so that a checkout without .git works too)."""
    subprocess.run(["git", "init", "-q", str(scratch)], check=True)
    (scratch / ".gitignore").write_bytes((readme.ROOT / ".gitignore").read_bytes())
    answer = subprocess.run(
        ["git", "-C", str(scratch), "check-ignore", "-v", "-n", "--stdin"],
        input="\n".join(paths) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode in (0, 1), answer.stderr
    return [line.split("\t", 1)[1] for line in answer.stdout.splitlines() if line.startswith("::")]


def _opened(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def _check_claims(command: str, view: Path, stdout: str) -> None:
    """What the line's flags promise, on the files it names."""
    words = shlex.split(command, comments=True)
    if "&&" in words:
        words = words[words.index("&&") + 1 :]

    def value(flag: str) -> str | None:
        return words[words.index(flag) + 1] if flag in words else None

    target = value("-o") or value("--body-output") or value(">")
    if target == "-":
        target = value(">")
    if "--outputs" in words:  # invoke --local: what the function stored, by key
        folder = view / (value("--outputs") or "")
        stored = sorted(path.relative_to(folder).parts[0] for path in folder.rglob("*.png"))
        assert stored == ["cutouts", "masks"], stored
        return
    assert target is not None, f"no output named in {command}"
    if target.endswith("/"):  # a folder of images in, the same tree out
        source = view / next(word for word in words if word.endswith("/") and word != target)
        extension = "." + (value("--format") or "png")
        expected = {path.relative_to(source).with_suffix(extension).as_posix() for path in source.rglob("*.jpg")}
        made = {path.relative_to(view / target).as_posix() for path in (view / target).rglob("*") if path.is_file()}
        assert made == expected
        return
    output = _opened(view / target)
    inputs = [word for word in words if word.startswith("samples/")] or [
        word.removeprefix("@") for word in words if word.startswith(("@samples/", "image_file=@"))
    ]
    if "--body-output" in words:
        response = json.loads(stdout)
        assert response["statusCode"] == 200 and len(stdout) < 4096, "the body went to stdout too"
    if "--max-size" in words:
        assert max(output.size) == int(value("--max-size") or 0)
    if "--mask" in words:
        path = view / target
        mask = _opened(path.with_name(f"{path.stem}-mask{path.suffix}"))
        # Grey: WebP has no single-band mode, so Pillow reads a WebP mask back as RGB with equal bands.
        red, green, blue = mask.convert("RGB").split()
        assert mask.size == output.size and red.tobytes() == green.tobytes() == blue.tobytes()
    if "--bg-color" in words:
        assert "A" not in output.getbands()
    if "--crop" in words:
        with Image.open(view / inputs[0]) as photo:
            assert output.width <= photo.width and output.height <= photo.height and output.size != photo.size
    if "--keep-metadata" in words:
        assert latitude(output) == LATITUDE
        assert output.width > output.height, "the phone photo's orientation was not applied"


def test_the_set_up_is_the_two_commands_and_the_port_example() -> None:
    (first, *_rest) = [block for block in readme.blocks(readme.parts()[0]) if block.language == "bash"]
    assert [line.split("#")[0].strip() for line in first.lines] == ["make demo", "make test"]
    assert [line for block in readme.blocks(readme.parts()[0]) for line in block.lines if DEMO_LINE.match(line)]


def test_the_command_line_examples_cover_the_options() -> None:
    text = "\n".join(example.code for example in EXAMPLES if example.section == "Command line")
    for flag in ("--bg-color", "--crop", "--margin", "--max-size", "--mask", "--format", "-o -", "--keep-metadata"):
        assert flag in text
    assert "invoke --local" in text and "--body-output" in text


def test_the_demo_terminal_stays_quiet(demo: Demo) -> None:
    # THEN after serving the README's lines, the demo's terminal holds no traceback and names its model once
    assert not [line for line in demo.output if "Traceback" in line or line.startswith("Exception")]
    assert len([line for line in demo.output if line.startswith("model:")]) == 1


def _anchors(document: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", document.read_text(), flags=re.M | re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_of_the_readme_and_docs_resolves() -> None:
    documents = [readme.README, *sorted((readme.ROOT / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{document.relative_to(readme.ROOT)}: {target}")
    assert broken == []
