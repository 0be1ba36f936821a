"""The offline checking tools (SAM CLI, cfn-lint) live in a venv of their own (`make tools`),
because aws-sam-cli pins an older boto3 than the function uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = Path(os.environ.get("SAM_TOOLS_BIN", ROOT / ".venv-tools" / "bin"))


def tool_path(name: str) -> Path:
    """The tool's executable; a missing one fails the test (make test installs them), never skips it."""
    executable = TOOLS_BIN / name
    if not executable.exists():
        pytest.fail(f"{executable} is missing: run `make tools` (make test does it)")
    return executable
