"""The layout's rule, enforced: handler/core imports no AWS library and nothing of handler.aws or handler.local.

Read from the import syntax of every module (no module is imported here), so a lazy import inside
a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HANDLER = Path(__file__).resolve().parents[2] / "handler"
CORE = HANDLER / "core"
# What the core must never reach: the AWS SDK and Powertools, and the package's AWS and local sides.
FORBIDDEN = ("boto3", "botocore", "s3transfer", "aws_lambda_powertools", "handler.aws", "handler.local")


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` imports, relative imports resolved against `package`."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            modules.add(module)
            # `from handler import aws` names the subpackage as an imported name.
            modules.update(f"{module}.{alias.name}" for alias in node.names)
    return modules


def forbidden_imports(source: str, package: str = "handler.core") -> list[str]:
    return sorted(
        module
        for module in imported_modules(source, package)
        if any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)
    )


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_has_modules() -> None:
    assert len(core_modules()) >= 10


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: path.name)
def test_core_module_imports_nothing_of_aws_or_local(path: Path) -> None:
    package = ".".join(path.relative_to(HANDLER.parent).parts[:-1])  # handler.core, or a subpackage of it
    assert forbidden_imports(path.read_text(), package) == []


@pytest.mark.parametrize(
    "source",
    [
        "import boto3",
        "from botocore.config import Config",
        "from aws_lambda_powertools import Logger",
        "from handler.aws.storage import Storage",
        "from handler import local",
        "from ..aws import runtime",
        "def lazy():\n    import handler.local.server",
    ],
)
def test_the_rule_sees_every_way_of_importing(source: str) -> None:
    # As if written in a module of handler/core, where `..aws` is handler.aws.
    assert forbidden_imports(source) != []


def test_the_core_may_import_itself_and_its_libraries() -> None:
    allowed = "import numpy\nfrom PIL import Image\nfrom handler.core.errors import InvalidImage\nfrom . import png\n"
    assert forbidden_imports(allowed) == []
