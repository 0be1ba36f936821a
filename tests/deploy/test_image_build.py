"""The image, built by executing the Dockerfile's own steps (emulator.image), without Docker.

Each RUN sees exactly what the COPY lines before it put into the image, at the image's paths, with
a clean interpreter (no checkout on sys.path, no editable install) and the lock's pinned packages.
The model step downloads from tests/fakehub.py on 127.0.0.1, serving a tiny graph with BiRefNet's
contract under the Dockerfile's default MODEL_REPO/MODEL_FILE: the only stand-in for the internet.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.dockerfile import read, words
from emulator.dockerignore import DockerIgnore
from emulator.image import BuildError, Image, build_image, copy_sources, run_keys, sandbox_args
from tests.fakehub import FakeHub
from tests.helpers.build_context import copy_context

ROOT = Path(__file__).resolve().parents[2]
# A tiny graph with BiRefNet's contract whose deformable convolution is decomposed the way the
# public export spells it: the model step must make it native and verify it on the photos it copies.
GRAPH = (ROOT / "tests" / "model" / "deform_fixtures" / "birefnet_tiny.onnx").read_bytes()


def _default(argument: str) -> str:
    for instruction in read(ROOT / "Dockerfile"):
        for word in words(instruction.arguments, {}) if instruction.keyword == "ARG" else []:
            name, _, value = word.partition("=")
            if name == argument:
                return value
    raise AssertionError(f"the Dockerfile declares no ARG {argument}")


@pytest.fixture(scope="session")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_file(_default("MODEL_REPO"), _default("MODEL_FILE"), GRAPH, revision=_default("MODEL_REVISION"))
        yield fake


@pytest.fixture(scope="session")
def build(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Image | BuildError:
    """The build's outcome, once per session; each test fails with the build's log if it failed."""
    try:
        return build_image(tmp_path_factory.mktemp("image") / "root", step_env={"HF_ENDPOINT": hub.endpoint})
    except BuildError as error:
        return error


def _built(build: Image | BuildError) -> Image:
    if isinstance(build, BuildError):
        pytest.fail(f"the image build failed:\n{build}", pytrace=False)
    return build


@pytest.mark.sandbox
def test_the_model_is_baked_from_the_hub(build: Image | BuildError, hub: FakeHub) -> None:
    image = _built(build)
    model = image.root / "opt" / "model"
    manifest = json.loads((model / "model.json").read_text())
    assert manifest["source_sha256"] == hashlib.sha256(GRAPH).hexdigest()
    assert manifest["source"] == f"{_default('MODEL_REPO')}/{_default('MODEL_FILE')}@{_default('MODEL_REVISION')}"
    assert manifest["path"] == "/opt/model/model.onnx"
    assert (model / "model.onnx").stat().st_size > 0
    # The native-DeformConv rewrite ran with what the step copies (onnx from the bake requirements,
    # the sample photos) and was verified before it was kept.
    assert manifest["native_deform"]["applied"] is True, manifest["native_deform"]["reason"]
    assert manifest["native_deform"]["check"]["probes"] == sorted(
        path.name for path in (ROOT / "samples").glob("*.jpg")
    )
    assert (
        "GET",
        f"/{_default('MODEL_REPO')}/resolve/{_default('MODEL_REVISION')}/{_default('MODEL_FILE')}",
    ) in hub.requests
    # The model's contract travels with it (handler.core.model.contract): BiRefNet's logits, read
    # from its graph in the build step, so the functions need no MODEL_OUTPUT of their own.
    assert manifest["contract"]["output"] == "logits" and manifest["contract"]["bounded_by"] is None


@pytest.mark.sandbox
def test_the_build_leaves_nothing_in_tmp_or_home(build: Image | BuildError) -> None:
    """The model step's scratch (and what libraries write on the side) must not ship in the image."""
    image = _built(build)
    leftovers = [
        path.relative_to(image.root).as_posix() for top in ("tmp", "root") for path in (image.root / top).rglob("*")
    ]
    assert leftovers == []


@pytest.mark.sandbox
def test_the_image_imports_its_entry_points(build: Image | BuildError, tmp_path: Path) -> None:
    """Lambda's view: the image read-only but /tmp, no network, the task root on sys.path (as
    awslambdaric puts it), and the module-level init that loads the baked model."""
    image = _built(build)
    (handler,) = image.cmd
    entry_points = [handler, "handler.jobs.lambda_handler"]
    check = (
        "import importlib, sys\n"
        "from handler.aws import runtime\n"
        "for name in sys.argv[1:]:\n"
        "    module, _, function = name.rpartition('.')\n"
        "    assert callable(getattr(importlib.import_module(module), function)), name\n"
        "print(runtime.current().model_name)\n"
    )
    env = {
        **image.env,
        "PYTHONPATH": image.env["LAMBDA_TASK_ROOT"],
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "image-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "OUTPUT_BUCKET": "outputs",
    }
    python_home = image.python.parents[1]
    result = subprocess.run(
        [
            *sandbox_args(
                image.root,
                python_home,
                image.env["LAMBDA_TASK_ROOT"],
                env,
                writable=("/tmp",),
                overrides={"/tmp": tmp_path},
                network=False,
            ),
            "python",
            "-c",
            check,
            *entry_points,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "model.onnx"


def test_the_build_context_holds_the_copied_files_and_nothing_else() -> None:
    """What `docker build` would send after .dockerignore: no venvs, caches or git, every COPY source."""
    context = list(DockerIgnore.of(ROOT).files(ROOT))
    unwanted = (
        ".venv",
        ".venv-",
        ".cache",
        ".git",
        ".pytest_cache",
        ".hypothesis",
        "demo-output",
        "tests",
        "benchmarks",
    )
    assert [name for name in context if name.startswith(unwanted) or "__pycache__" in name] == []
    for arch in sorted(
        path.stem.removeprefix("requirements-") for path in (ROOT / "layers").glob("requirements-*.txt")
    ):
        for source in copy_sources(ROOT, {"TARGETARCH": arch}):
            folder = source.rstrip("/")
            assert source in context or any(name.startswith(folder + "/") for name in context), (arch, source)


def _model_step_key(context: Path, dest: Path) -> tuple[str, str]:
    """The layer keys of the model step and of the code step's bytecode RUN, for `context`."""
    keys = run_keys(dest, context=context)
    (model,) = [key for arguments, key in keys if "python -m handler.core.bake" in arguments]
    (code,) = [key for arguments, key in keys if "compileall" in arguments]
    return model, code


@pytest.mark.parametrize(
    ("edited", "rebuilds_the_model"),
    [
        ("handler/core/render.py", False),
        ("handler/core/image/decode.py", False),
        ("handler/aws/pipeline.py", False),
        ("handler/local/cli.py", False),
        ("handler/api.py", False),
        ("handler/core/model/session.py", True),
        ("handler/core/bake/run.py", True),
    ],
)
def test_a_request_path_edit_keeps_the_model_layer(tmp_path: Path, edited: str, rebuilds_the_model: bool) -> None:
    """Docker reuses a layer while its key holds: the model step's (~224 MB download, minutes of
    verification) must not depend on the code that serves requests, only on the model's own."""
    context = copy_context(tmp_path / "context")
    model_before, code_before = _model_step_key(context, tmp_path / "before")
    with (context / edited).open("a") as module:
        module.write("\n# an edit\n")
    model_after, code_after = _model_step_key(context, tmp_path / "after")
    assert code_after != code_before
    assert (model_after != model_before) is rebuilds_the_model
