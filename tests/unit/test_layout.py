"""The layout's rules, enforced on the import syntax of every module (tests/imports.py).

handler/core imports no AWS library and nothing of handler.aws or handler.local. Inside it, each
module sits in one room, and a room imports only the rooms below it:

    shared (errors, env, cpu)  <-  image, model  <-  render (image + model);  model  <-  bake

The image work never imports the model or the bake, the model never the image, and nothing that
serves a request imports the bake (nor `onnx`, which the image does not carry).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imports import imported_modules, module_name, package_of

HANDLER = Path(__file__).resolve().parents[2] / "handler"
CORE = HANDLER / "core"
# What the core must never reach: the AWS SDK and Powertools, and the package's AWS and local sides.
FORBIDDEN = ("boto3", "botocore", "s3transfer", "aws_lambda_powertools", "handler.aws", "handler.local")
SHARED = ("handler.core", "handler.core.errors", "handler.core.env", "handler.core.cpu")
# Each room, by the modules it holds, and the rooms its modules may import.
ROOMS: dict[str, tuple[str, ...]] = {
    "shared": (),
    "image": ("shared",),
    "model": ("shared",),
    "bake": ("shared", "model"),
    "render": ("shared", "image", "model"),
}
# The ONNX toolkit is a build-time dependency: only the bake may use it.
BUILD_ONLY = ("onnx",)


def room_of(module: str) -> str | None:
    """The room a module of handler.core belongs to; None for a module no room claims."""
    if module in SHARED:
        return "shared"
    if module == "handler.core.render":
        return "render"
    for room in ("image", "model", "bake"):
        if module == f"handler.core.{room}" or module.startswith(f"handler.core.{room}."):
            return room
    return None


def _under(module: str, names: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in names)


def broken_rules(source: str, module: str = "handler.core.image.decode", package: str | None = None) -> list[str]:
    """The imports of `source`, written in `module`, that break the layout's rules."""
    room = room_of(module)
    allowed = {room, *ROOMS[room]} if room is not None else set()
    broken = []
    for imported in sorted(imported_modules(source, package if package is not None else module.rsplit(".", 1)[0])):
        if _under(imported, FORBIDDEN) or (_under(imported, BUILD_ONLY) and room != "bake"):
            broken.append(imported)
        elif imported.startswith("handler.core.") or imported == "handler.core":
            # `from handler.core.image import decode` names both handler.core.image and .decode.
            target = room_of(imported)
            if target is None and imported.count(".") > 2:
                target = room_of(imported.rsplit(".", 1)[0])
            if target is not None and target not in allowed:
                broken.append(imported)
    return broken


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_has_rooms() -> None:
    rooms = {room_of(module_name(path)) for path in core_modules()}
    assert rooms == set(ROOMS)


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: str(path.relative_to(CORE)))
def test_every_core_module_sits_in_a_room(path: Path) -> None:
    assert room_of(module_name(path)) is not None, "a new module of handler/core goes into a room (or SHARED)"


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: str(path.relative_to(CORE)))
def test_core_module_imports_only_what_its_room_may(path: Path) -> None:
    assert broken_rules(path.read_text(), module_name(path), package_of(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import boto3",
        "from botocore.config import Config",
        "from aws_lambda_powertools import Logger",
        "from handler.aws.storage import Storage",
        "from handler import local",
        "from ...aws import runtime",
        "def lazy():\n    import handler.local.server",
        "import onnx",
        "from handler.core.bake.run import bake",
        "from handler.core.bake import rewrite",
        "from handler.core.model.session import BackgroundModel",
        "from handler.core import render",
        "from ..model import store",
    ],
)
def test_the_rules_see_every_way_of_importing(source: str) -> None:
    # As if written in the image room (handler.core.image.decode): `..model` is handler.core.model, `...aws` handler.aws.
    assert broken_rules(source) != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("handler.core.model.session", "from handler.core.image.decode import Picture"),
        ("handler.core.model.store", "from handler.core.bake.run import BAKED_MODEL"),
        ("handler.core.errors", "from handler.core.image.formats import FORMATS"),
        ("handler.core.render", "from handler.core.bake import run"),
        ("handler.core.cpu", "from handler.core.render import process"),
    ],
)
def test_the_rules_hold_in_every_room(module: str, source: str) -> None:
    assert broken_rules(source, module) != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        (
            "handler.core.image.decode",
            "import numpy\nfrom PIL import Image\nfrom handler.core.errors import InvalidImage\nfrom . import png\n",
        ),
        ("handler.core.bake.run", "import onnx\nfrom handler.core.model.session import BackgroundModel\n"),
        (
            "handler.core.render",
            "from handler.core.image.decode import Picture\nfrom handler.core.model import session\n",
        ),
    ],
)
def test_a_room_may_import_itself_the_rooms_below_and_its_libraries(module: str, source: str) -> None:
    assert broken_rules(source, module) == []
