"""The image emulator's own rules, on tiny Dockerfiles (no pip, no model): what Docker would do."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.dockerignore import DockerIgnore
from emulator.image import BuildError, build_image
from emulator.images import content_key
from tests.helpers.build_context import copy_context

ROOT = Path(__file__).resolve().parents[2]
BASE = "FROM public.ecr.aws/lambda/python:3.12\n"


def _context(folder: Path, dockerfile: str, files: dict[str, str]) -> Path:
    folder.mkdir()
    (folder / "Dockerfile").write_text(BASE + dockerfile)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_a_cached_layer_is_reused_for_the_same_inputs_and_rebuilt_for_new_ones(tmp_path: Path) -> None:
    # The step records when it ran: a cache hit brings back the same record, a rebuild a new one.
    context = _context(
        tmp_path / "context",
        (
            "COPY lock.txt /tmp/lock.txt\n"
            "RUN : --require-hashes && cat /tmp/lock.txt > /var/task/out && date +%s%N >> /var/task/out"
            " && rm /tmp/lock.txt\n"
        ),
        {"lock.txt": "a\n"},
    )
    cache = tmp_path / "cache"

    def out(name: str) -> list[str]:
        image = build_image(tmp_path / name, context=context, cache_dir=cache)
        return (image.root / "var/task/out").read_text().splitlines()

    first, again = out("first"), out("again")
    assert again == first
    (context / "lock.txt").write_text("b\n")
    changed = out("changed")
    assert changed[0] == "b" and changed[1] != first[1]


def test_a_run_sees_only_what_was_copied_at_the_image_paths(tmp_path: Path) -> None:
    context = _context(
        tmp_path / "context",
        (
            "COPY one.txt /opt/app/\n"
            "RUN ls -A /opt /opt/app /tmp > /var/task/listing && test \"$(python -c 'import sys; print(sys.prefix)')\" = /var/lang\n"
        ),
        {"one.txt": "1", "two.txt": "2"},
    )
    image = build_image(tmp_path / "image", context=context, cache_dir=tmp_path / "cache")
    assert (image.root / "var/task/listing").read_text().split() == ["/opt:", "app", "/opt/app:", "one.txt", "/tmp:"]


def test_copying_an_ignored_file_fails_as_in_docker(tmp_path: Path) -> None:
    context = _context(
        tmp_path / "context", "COPY secret.txt /tmp/\n", {"secret.txt": "x", ".dockerignore": "secret.txt\n"}
    )
    with pytest.raises(BuildError, match=r"secret\.txt: not found in the build context"):
        build_image(tmp_path / "image", context=context, cache_dir=tmp_path / "cache")


def test_an_unknown_instruction_is_refused_not_skipped(tmp_path: Path) -> None:
    context = _context(tmp_path / "context", "USER nobody\n", {})
    with pytest.raises(BuildError, match="USER is not supported"):
        build_image(tmp_path / "image", context=context, cache_dir=tmp_path / "cache")


def test_the_repo_dockerignore_keeps_out_what_a_checkout_accumulates(tmp_path: Path) -> None:
    """Whatever this checkout happens to hold: venvs, caches, git, bytecode never reach the context."""
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    junk = [
        ".venv/bin/python",
        ".venv-tools/bin/sam",
        ".cache/models/u2netp.onnx",
        ".git/HEAD",
        "handler/__pycache__/api.cpython-311.pyc",
        "handler/stray.pyc",
        ".pytest_cache/v/x",
        ".hypothesis/examples/x",
        "demo-output/cutout.png",
        "tests/test_x.py",
        "notes.md",
    ]
    wanted = ["handler/__init__.py", "handler/static/index.html", "layers/requirements-amd64.txt"]
    for name in junk + wanted:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert sorted(DockerIgnore.of(tmp_path).files(tmp_path)) == wanted


@pytest.mark.parametrize(
    ("edited", "changes_the_image"),
    [
        ("samples/chelsea.jpg", True),  # a probe of the bake's DeformConv check
        ("layers/bake-requirements-amd64.txt", True),
        ("layers/requirements-amd64.txt", True),
        (".dockerignore", True),
        ("Dockerfile", True),
        ("handler/core/render.py", True),
        ("README.md", False),  # not in the build context
        ("tests/conftest.py", False),
    ],
)
def test_the_cached_image_is_keyed_by_everything_the_build_can_read(
    tmp_path: Path, edited: str, changes_the_image: bool
) -> None:
    context = copy_context(tmp_path / "context", extra=("README.md", "tests/conftest.py"))
    before = content_key(context, {}, {})
    with (context / edited).open("ab") as file:
        file.write(b"\n")
    assert (content_key(context, {}, {}) != before) is changes_the_image
