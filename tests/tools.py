"""The tools the tests need beyond Python packages, and what happens when one is missing: the test
fails (make test installs them), it never skips, so a run without them cannot look green.

The offline checking tools (SAM CLI, cfn-lint) live in a venv of their own (`make tools`), because
aws-sam-cli pins an older boto3 than the function uses. The machine's tools (bubblewrap and strace
for the sandboxed image build and Lambda runs, Debian's chromium for the browser test) come from
`make sandbox-tools` and `make chromium`, which need root; on a machine that cannot have them, a
developer may let those tests skip by naming them: TESTS_MAY_SKIP=sandbox,browser make test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = Path(os.environ.get("SAM_TOOLS_BIN", ROOT / ".venv-tools" / "bin"))
CHROMIUM = Path("/usr/bin/chromium")


def tool_path(name: str) -> Path:
    """The tool's executable; a missing one fails the test (make test installs them), never skips it."""
    executable = TOOLS_BIN / name
    if not executable.exists():
        pytest.fail(f"{executable} is missing: run `make tools` (make test does it)")
    return executable


def require(kind: str, missing: Sequence[str], install: str) -> None:
    """Fail the calling test when `missing` names anything, unless TESTS_MAY_SKIP names `kind`."""
    if not missing:
        return
    message = f"{', '.join(missing)}: {install}"
    if kind in os.environ.get("TESTS_MAY_SKIP", "").replace(" ", "").split(","):
        pytest.skip(message)
    pytest.fail(f"{message} (or TESTS_MAY_SKIP={kind}, on a machine that cannot have it)", pytrace=False)


def require_sandbox() -> None:
    """bubblewrap and strace, as root: the image build's RUN steps and the Lambda runs."""
    missing = [f"{tool} is missing" for tool in ("bwrap", "strace") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("bubblewrap's namespaces need root here")
    require("sandbox", missing, "`make sandbox-tools` installs bubblewrap and strace (as root)")


def require_chromium() -> None:
    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} is missing"]
    require("browser", missing, "`make chromium` installs Debian's chromium (as root)")
