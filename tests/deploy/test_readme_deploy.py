"""README's deploy part, checked without an AWS account against the tools that run it.

- the guided deploy's table is the questions SAM CLI's own `sam deploy --guided` asks for
  template.yaml, in order, with their defaults (tests/deploy/sam_guided_prompts.py);
- its `sam` commands and options exist in the tools venv's SAM CLI, its `aws` commands in botocore's
  service models there (tests/deploy/aws_cli_commands.py), its `make` targets in the Makefile;
- the permissions it lists for the deployer cover every kind of resource the stack creates (the SAM
  transform's output, with every optional part enabled).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cloudformation import ROOT, tool_environment, transform
from tests.helpers import readme

TOOLS_PYTHON_TIMEOUT_S = 300
# The guided deploy asks the region with the one configured as its default: the README cannot show it.
REGION_PROMPT = "AWS Region"
# What CloudFormation needs besides the stack's own resources: itself, SAM's bucket and image repositories.
ALWAYS_NEEDED = {"cloudformation", "s3", "ecr", "iam"}
# Resource types whose IAM namespace is not their CloudFormation service name, lower-cased.
NAMESPACES = {"ApiGatewayV2": "apigateway"}


def _deploy_part() -> str:
    return readme.parts()[1]


def _run_tool_script(tool: Callable[[str], Path], script: str, *args: str, stdin: str = "") -> Any:
    result = subprocess.run(
        [str(tool("python")), str(ROOT / "tests" / "deploy" / script), *args],
        cwd=ROOT,
        env=tool_environment(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOLS_PYTHON_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _shown(kind: str, default: Any) -> str:
    """A default as the README's table shows it: Y/N for a yes/no question, else the value."""
    if kind == "confirm":
        return "Y" if default else "N"
    return "" if default is None else str(default)


def test_the_guided_deploy_table_is_what_sam_asks(tool: Callable[[str], Path]) -> None:
    # GIVEN the questions SAM CLI's guided deploy asks for template.yaml, answering each with its default
    asked = _run_tool_script(tool, "sam_guided_prompts.py", "template.yaml")

    # WHEN the README's table of them is read
    rows = readme.table(readme.section(_deploy_part(), "Build and deploy"))

    # THEN it lists the same questions in the same order, with the same defaults
    assert [row[0] for row in rows] == [prompt for _kind, prompt, _default in asked]
    for (kind, prompt, default), row in zip(asked, rows, strict=True):
        if prompt == REGION_PROMPT:
            assert "configured region" in row[1]
        else:
            assert row[1] == _shown(kind, default), prompt


def _deploy_commands() -> list[list[str]]:
    """Every command of the deploy part's shell blocks, and of its inline `aws ...`/`sam ...` spans."""
    part = _deploy_part()
    lines = [line for block in readme.blocks(part) if block.language == "bash" for line in block.lines]
    lines += [span for span in re.findall(r"`((?:aws|sam) [^`]+)`", part) if len(span.split()) >= 2]
    return [command for line in lines for command in readme.commands(line)]


def test_the_deploy_part_names_commands_of_each_tool() -> None:
    programs = {command[0] for command in _deploy_commands()}
    assert {"aws", "sam", "make"} <= programs


def test_every_aws_command_exists(tool: Callable[[str], Path]) -> None:
    commands = [command for command in _deploy_commands() if command[0] == "aws" and len(command) > 2]
    assert commands

    problems = _run_tool_script(tool, "aws_cli_commands.py", stdin=json.dumps(commands))

    assert problems == []


def _sam_commands() -> dict[str, set[str]]:
    """Each `sam` command the deploy part runs (its words before the first option) and the options it gives."""
    found: dict[str, set[str]] = {}
    for command in _deploy_commands():
        if command[0] != "sam":
            continue
        first_option = next((index for index, word in enumerate(command) if word.startswith("-")), len(command))
        options = {word.split("=", 1)[0] for word in command[first_option:] if word.startswith("--")}
        found.setdefault(" ".join(command[1:first_option]), set()).update(options)
    return found


@pytest.mark.parametrize("subcommand", sorted(_sam_commands()))
def test_every_sam_command_and_option_exists(tool: Callable[[str], Path], subcommand: str) -> None:
    # GIVEN SAM CLI's own help for the command
    help_text = subprocess.run(
        [str(tool("sam")), *subcommand.split(), "--help"],
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=TOOLS_PYTHON_TIMEOUT_S,
    )
    assert help_text.returncode == 0, help_text.stderr

    # THEN every option the README gives it is one the help lists
    assert _sam_commands()[subcommand] - set(re.findall(r"--[a-z0-9-]+", help_text.stdout)) == set()


def test_every_make_target_exists() -> None:
    targets = {command[1] for command in _deploy_commands() if command[0] == "make" and len(command) > 1}
    makefile = (ROOT / "Makefile").read_text()
    assert {target for target in targets if not re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE)} == set()


def test_the_deployer_s_permissions_cover_what_the_stack_creates() -> None:
    # GIVEN every kind of resource the stack can create, as CloudFormation gets it (all options on)
    template = transform({"RemoveBgApiKeys": "ENABLED"})
    services = {kind.split("::")[1] for kind in (resource["Type"] for resource in template["Resources"].values())}
    needed = {NAMESPACES.get(service, service.lower()) for service in services} | ALWAYS_NEEDED

    # WHEN the README's list of the deployer's permissions is read
    text = readme.section(_deploy_part(), "What you need")
    permissions = text[text.index("**Permissions**") :].split("\n- ", 1)[0]
    actions = set(re.findall(r"`([a-z0-9-]+:[A-Za-z*]+)`", permissions))

    # THEN each resource's service is in it, and so is passing the functions' roles to Lambda
    assert needed - {action.split(":")[0] for action in actions} == set()
    assert "iam:PassRole" in actions
