"""README's first signed call, run as written against a local server that checks SigV4 as API Gateway does.

The README's own lines run in a fresh shell: the `export API=$(aws cloudformation ...)` line, then
its Python snippet saved as call.py and run with `.venv/bin/python call.py`, or its curl block. The
AWS CLI is tests/helpers/aws_cli_stub.py on the PATH (the CLI v2 is not on PyPI): it answers the
stack's outputs, and credentials and region through botocore's default chain, as the CLI does.
The server (tests/helpers/sigv4.py) verifies each request from the specification.

Two sets of credentials, as newcomers have them: long-term keys from `aws configure` (in
~/.aws/credentials, the region in ~/.aws/config), and temporary ones with a session token in the
environment (SSO, an assumed role). Neither names the region in the environment, so the region
can only come from the configuration, never from the snippet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import readme
from tests.helpers.sigv4 import Credentials, SigV4Server

REGION = "eu-west-3"  # not us-east-1: a snippet that assumes it must fail
STACK = "background-remover"
LONG_TERM = Credentials("AKIDEXAMPLELONGTERM", "long-term-secret")
TEMPORARY = Credentials("ASIAEXAMPLETEMPORARY", "temporary-secret", "FwoGZXIvYXdzEXAMPLETOKEN==")
CHILD_TIMEOUT_S = 120


def _section() -> str:
    return readme.section(readme.parts()[1], "The first signed call")


def _blocks() -> tuple[str, str, str]:
    """(the line that finds the API, the Python snippet, the curl block)."""
    found = readme.blocks(_section())
    api_line, snippet, curl = (
        [block.text for block in found if block.language == "bash" and "export API=" in block.text],
        [block.text for block in found if block.language == "python"],
        [block.text for block in found if block.language == "bash" and "curl" in block.text],
    )
    assert len(api_line) == len(snippet) == len(curl) == 1, "expected one API line, one snippet, one curl block"
    return api_line[0], snippet[0], curl[0]


def _shell(tmp_path: Path, credentials: Credentials, api_url: str) -> tuple[Path, dict[str, str]]:
    """A checkout view and a fresh shell's environment holding these credentials, the AWS CLI stub first."""
    view = readme.checkout_view(tmp_path / "checkout")
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text(f"[default]\nregion = {REGION}\n")
    env = {"PATH": f"{tmp_path / 'bin'}:{readme.FRESH_PATH}", "HOME": str(home), "LANG": "C.UTF-8"}
    if credentials.token is None:  # `aws configure`
        (home / ".aws" / "credentials").write_text(
            f"[default]\naws_access_key_id = {credentials.access_key}\n"
            f"aws_secret_access_key = {credentials.secret_key}\n"
        )
    else:
        env |= {
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_SESSION_TOKEN": credentials.token,
        }
    # -P: the stub's own folder (tests/helpers, with an http.py) must not shadow the standard library.
    stub = tmp_path / "bin" / "aws"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nexec "{sys.executable}" -P "{readme.ROOT}/tests/helpers/aws_cli_stub.py" "$@"\n')
    stub.chmod(0o755)
    env |= {"STUB_STACK_NAME": STACK, "STUB_STACK_OUTPUTS": json.dumps({"ApiUrl": api_url})}
    return view, env


@pytest.mark.parametrize("credentials", [LONG_TERM, TEMPORARY], ids=["aws-configure-keys", "session-token"])
@pytest.mark.parametrize("client", ["python", "curl"])
def test_the_first_signed_call_works_as_written(tmp_path: Path, credentials: Credentials, client: str) -> None:
    api_line, snippet, curl = _blocks()
    with SigV4Server(credentials, REGION).running() as api:
        view, env = _shell(tmp_path, credentials, api.url)
        if client == "python":
            (view / "call.py").write_text(snippet)  # "save this as call.py"
            script = f"{api_line}\n.venv/bin/python call.py"
        else:
            script = f"{api_line}\n{curl}"

        # WHEN the README's lines run in a fresh shell
        result = subprocess.run(
            ["bash", "-c", script], cwd=view, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
        )

        # THEN the one request was signed for the API's region with these credentials, and answered
        assert result.returncode == 0, result.stderr[-3000:]
        (verdict,) = api.verdicts
        assert verdict.ok, verdict.reason
        assert verdict.path == "/remove" and verdict.region == REGION
        # AND a session token is signed only when the credentials have one
        assert ("x-amz-security-token" in verdict.signed_headers) == (credentials.token is not None)
    with Image.open(view / "out" / "cutout.png") as cutout:
        assert cutout.format == "PNG"
