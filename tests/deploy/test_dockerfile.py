"""The Dockerfile cannot be built here (no Docker engine): check what it says, and run what it runs."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_u2netp import ensure_u2netp  # noqa: E402


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _arguments(instruction: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == instruction]


def test_base_image_is_the_aws_lambda_python_image() -> None:
    (base,) = _arguments("FROM")
    assert base.startswith("public.ecr.aws/lambda/python:3.")


def test_layers_are_ordered_requirements_then_model_then_code() -> None:
    runs_and_copies = [(name, args) for name, args in _instructions() if name in {"RUN", "COPY"}]
    order = [
        next(i for i, (name, args) in enumerate(runs_and_copies) if "requirements" in args),
        next(i for i, (name, args) in enumerate(runs_and_copies) if "python -m handler download" in args),
        next(i for i, (name, args) in enumerate(runs_and_copies) if args.startswith("handler/ ")),
    ]
    assert order == sorted(order), runs_and_copies


def test_entry_points_exist() -> None:
    commands = [json.loads(arguments) for arguments in _arguments("CMD")]
    assert commands == [["handler.api.lambda_handler"]]
    for module in ("api", "jobs"):
        tree = ast.parse((ROOT / "handler" / f"{module}.py").read_text())
        names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "lambda_handler" in names, module


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
        assert pins and all(
            f"{name}=={version} \\\n    --hash=sha256:" in text for name, version in pins.items()
        ), lock.name
        for requirement in declared:
            name, version = re.split(r"(?:\[[^\]]*\])?==", requirement)
            assert pins.get(name.lower().replace("_", "-")) == version, f"{lock.name}: {requirement}"


def _model_step_tree(tmp_path: Path) -> Path:
    """A folder holding exactly what the Dockerfile COPYs into /tmp/bake (modules and probe photos)."""
    copies = [args.split() for args in _arguments("COPY")]
    into_bake = [(sources, destination) for *sources, destination in copies if destination.startswith("/tmp/bake/")]
    assert "/tmp/bake/handler/" in {destination for _, destination in into_bake}
    for sources, destination in into_bake:
        folder = tmp_path / destination.removeprefix("/tmp/bake/")
        folder.mkdir(parents=True, exist_ok=True)
        for source in sources:
            matches = sorted(ROOT.glob(source))
            assert matches, f"COPY {source} matches nothing"
            for match in matches:
                shutil.copy(match, folder)
    return tmp_path


def _run_model_step(tree: Path, model: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODEL_PATH": str(model), "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, "-m", "handler", "download", "--output", str(tree / "model")],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )


def test_the_model_step_runs_with_only_the_files_it_copies(tmp_path: Path) -> None:
    """Run the Dockerfile's model step from a folder holding exactly the modules it COPYs."""
    tree = _model_step_tree(tmp_path)
    result = _run_model_step(tree, ensure_u2netp())
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    assert manifest["source_sha256"] == "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
    assert (tmp_path / "model" / "model.onnx").stat().st_size > 1_000_000
    assert manifest["native_deform"]["reason"] == "no decomposed deformable convolutions in this graph"


def test_the_model_step_makes_deformable_convolutions_native(tmp_path: Path) -> None:
    """With a decomposed-DeformConv model, the step as copied rewrites it and checks it on the photos it copies."""
    tree = _model_step_tree(tmp_path)
    result = _run_model_step(tree, ROOT / "tests" / "model" / "deform_fixtures" / "birefnet_tiny.onnx")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "model" / "model.json").read_text())["native_deform"]
    assert record["applied"] is True, record["reason"]
    assert record["check"]["probes"] == sorted(p.name for p in (ROOT / "samples").glob("*.jpg"))


def test_bake_requirements_pin_onnx_as_pyproject_does_and_stay_out_of_the_image() -> None:
    tests_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (onnx_pin,) = [requirement for requirement in tests_extra if requirement.startswith("onnx==")]
    for arch in ("amd64", "arm64"):
        text = (ROOT / "layers" / f"bake-requirements-{arch}.txt").read_text()
        assert f"{onnx_pin} \\\n    --hash=sha256:" in text, arch
        assert "numpy==" not in text  # the runtime's numpy serves the step
    (run,) = [args for args in _arguments("RUN") if "python -m handler download" in args]
    assert "--require-hashes" in run and "--target /tmp/bake-deps" in run
    assert re.search(r"rm -rf [^&]*/tmp/bake-deps", run)
    assert "/tmp/bake-deps" not in " ".join(_arguments("ENV"))


@pytest.mark.parametrize("argument", ["MODEL_REPO", "MODEL_FILE", "MODEL_REVISION", "MODEL_SHA256"])
def test_model_source_is_a_build_argument(argument: str) -> None:
    assert any(args.startswith(f"{argument}=") for args in _arguments("ARG"))
