"""README's command line examples, run as written (from a folder holding samples/ and events/),
with the test graph as the model; the `download` lines need the hub and are not among them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.graphs import GraphFile
from tests.helpers.cli import CHILD_TIMEOUT_S, child_env, red_graph

ROOT = Path(__file__).resolve().parents[2]


def examples() -> list[str]:
    """The first bash block of README's "Command line" section, one command a line."""
    section = (ROOT / "README.md").read_text().split("## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_examples_cover_the_options() -> None:
    text = "\n".join(examples())
    for flag in ("--bg-color", "--crop", "--margin", "--max-size", "--mask", "--format", "-o -", "invoke --local"):
        assert flag in text


@pytest.mark.parametrize("command", examples())
def test_readme_example_runs_as_written(command: str, tmp_path: Path, graph_file: GraphFile) -> None:
    # GIVEN a copy of the repository's samples and events, and `bgremove` on the PATH as after activating .venv
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    shutil.copytree(ROOT / "events", tmp_path / "events")
    env = child_env(graph_file(red_graph()))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env = {name: value for name, value in env.items() if not name.startswith(("AWS_", "OUTPUT_", "INPUT_"))}

    # WHEN run by the shell, as written
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )

    # THEN it succeeds, and what it names as outputs exists
    assert result.returncode == 0, result.stderr[-2000:]
    words = shlex.split(command, comments=True)
    for flag in ("-o", "--outputs", "--body-output", ">"):
        if flag in words and words[words.index(flag) + 1] != "-":
            assert (tmp_path / words[words.index(flag) + 1]).exists(), flag
