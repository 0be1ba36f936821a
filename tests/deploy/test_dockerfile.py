"""What the Dockerfile says. Its steps are executed in tests/deploy/test_image_build.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from emulator.dockerfile import read
from tests.imports import import_closure

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) as `docker build` reads them."""
    return [(instruction.keyword, instruction.arguments) for instruction in read(ROOT / "Dockerfile")]


def _arguments(instruction: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == instruction]


def test_base_image_is_the_aws_lambda_python_image() -> None:
    (base,) = _arguments("FROM")
    assert base.startswith("public.ecr.aws/lambda/python:3.")


def test_layers_are_ordered_requirements_then_model_then_code() -> None:
    runs_and_copies = [(name, args) for name, args in _instructions() if name in {"RUN", "COPY"}]
    order = [
        next(i for i, (name, args) in enumerate(runs_and_copies) if "requirements" in args),
        next(i for i, (name, args) in enumerate(runs_and_copies) if "python -m handler.core.bake" in args),
        next(i for i, (name, args) in enumerate(runs_and_copies) if args.startswith("handler/ ")),
    ]
    assert order == sorted(order), runs_and_copies


def test_runtime_never_downloads() -> None:
    environment = " ".join(_arguments("ENV"))
    assert "MODEL_PATH=/opt/model/model.onnx" in environment
    assert "MODEL_OFFLINE=1" in environment
    assert "HF_HUB_OFFLINE=1" in environment


def test_requirements_are_pinned_with_hashes_and_match_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for lock in sorted((ROOT / "layers").glob("requirements-*.txt")):
        text = lock.read_text()
        pins = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", text, flags=re.MULTILINE))
        assert pins and all(f"{name}=={version} \\\n    --hash=sha256:" in text for name, version in pins.items()), (
            lock.name
        )
        for requirement in declared:
            name, version = re.split(r"(?:\[[^\]]*\])?==", requirement)
            assert pins.get(name.lower().replace("_", "-")) == version, f"{lock.name}: {requirement}"


def _bake_copies() -> list[str]:
    """The sources the model step copies (every COPY into /tmp/bake/), as paths in the checkout."""
    sources: list[str] = []
    for args in _arguments("COPY"):
        *names, destination = args.split()
        if destination.startswith("/tmp/bake/"):
            sources += names
    return sources


def _copied(module_path: Path, sources: list[str]) -> bool:
    relative = module_path.relative_to(ROOT).as_posix()
    return any(relative == source or (source.endswith("/") and relative.startswith(source)) for source in sources)


def test_the_model_step_copies_everything_the_bake_imports() -> None:
    """A hand-kept module list once broke the build: every module the bake's entry point reaches is copied."""
    reached = import_closure(ROOT / "handler" / "core" / "bake" / "__main__.py")
    assert len(reached) > 10
    missing = [path.relative_to(ROOT).as_posix() for path in reached if not _copied(path, _bake_copies())]
    assert missing == []


@pytest.mark.parametrize(
    "request_path",
    [
        "handler/core/render.py",
        "handler/core/image/decode.py",
        "handler/aws/pipeline.py",
        "handler/local/cli.py",
        "handler/api.py",
    ],
)
def test_the_model_step_copies_nothing_of_the_request_path(request_path: str) -> None:
    """So that editing the request path does not rebuild the model's layer (and re-bake the model)."""
    assert not _copied(ROOT / request_path, _bake_copies())


def test_bake_requirements_pin_onnx_as_pyproject_does_and_stay_out_of_the_image() -> None:
    tests_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (onnx_pin,) = [requirement for requirement in tests_extra if requirement.startswith("onnx==")]
    for arch in ("amd64", "arm64"):
        text = (ROOT / "layers" / f"bake-requirements-{arch}.txt").read_text()
        assert f"{onnx_pin} \\\n    --hash=sha256:" in text, arch
        assert "numpy==" not in text  # the runtime's numpy serves the step
    (run,) = [args for args in _arguments("RUN") if "python -m handler.core.bake" in args]
    assert "--require-hashes" in run and "--target /tmp/bake-deps" in run
    assert re.search(r"rm -rf [^&]*/tmp/bake-deps", run)
    assert "/tmp/bake-deps" not in " ".join(_arguments("ENV"))


@pytest.mark.parametrize(
    "argument",
    [
        "MODEL_REPO",
        "MODEL_FILE",
        "MODEL_REVISION",
        "MODEL_SHA256",
        # The contract, for a model whose graph cannot say it: recorded in model.json by the bake.
        "MODEL_OUTPUT",
        "MODEL_MEAN",
        "MODEL_STD",
        "MODEL_INPUT_SIZE",
    ],
)
def test_model_source_is_a_build_argument(argument: str) -> None:
    assert any(args.startswith(f"{argument}=") for args in _arguments("ARG"))
