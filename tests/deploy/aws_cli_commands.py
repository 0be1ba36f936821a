"""Whether AWS CLI command lines name operations and options that exist: botocore's service models.

Runs under the tools venv's Python (`make tools`), whose botocore holds every service's model (the
AWS CLI is botocore's operations with kebab-case names), without AWS:
`.venv-tools/bin/python tests/deploy/aws_cli_commands.py < commands.json`
reads [["aws", "cloudformation", "describe-stacks", "--stack-name", "x", ...], ...] and prints the
problems found, one string each, as a JSON list (empty: every command exists).

`aws s3` and `aws configure` are the CLI's own commands, not in any service model: the few of their
subcommands and options the README uses are listed here, from the AWS CLI's reference.
"""

from __future__ import annotations

import json
import sys

import botocore.session
from botocore import xform_name

# Options every `aws` command takes (the AWS CLI's global options).
GLOBAL_OPTIONS = {
    "--query",
    "--output",
    "--region",
    "--profile",
    "--endpoint-url",
    "--no-cli-pager",
    "--no-paginate",
    "--debug",
    "--color",
    "--cli-read-timeout",
    "--cli-connect-timeout",
}
# The CLI's own commands: https://docs.aws.amazon.com/cli/latest/reference/s3/ and .../configure/
CUSTOM_COMMANDS = {
    ("s3", "cp"): {"--recursive", "--content-type", "--exclude", "--include"},
    ("s3", "ls"): {"--recursive", "--human-readable", "--summarize"},
    ("s3", "rm"): {"--recursive", "--exclude", "--include"},
    ("configure", "export-credentials"): {"--format"},
    ("configure", "get"): set(),
    ("configure", "sso"): set(),
}


def problems(command: list[str]) -> list[str]:
    if len(command) < 3 or command[0] != "aws":
        return [f"not an `aws <service> <operation>` command: {command}"]
    service, operation = command[1], command[2]
    options = {word.split("=", 1)[0] for word in command[3:] if word.startswith("--")}
    if (service, operation) in CUSTOM_COMMANDS:
        allowed = CUSTOM_COMMANDS[(service, operation)]
    elif service in CUSTOM_COMMANDS_SERVICES:
        return [f"aws {service} {operation}: not a command this check knows; add it from the AWS CLI reference"]
    else:
        session = botocore.session.get_session()
        if service not in session.get_available_services():
            return [f"aws {service}: no such service"]
        model = session.get_service_model(service)
        operations = {xform_name(name, "-"): name for name in model.operation_names}
        if operation not in operations:
            return [f"aws {service} {operation}: no such operation"]
        shape = model.operation_model(operations[operation]).input_shape
        members = shape.members if shape is not None else {}
        allowed = set()
        for name, member in members.items():
            flag = f"--{xform_name(name, '-')}"
            allowed.add(flag)
            if member.type_name == "boolean":
                allowed.add(f"--no-{xform_name(name, '-')}")
    unknown = sorted(options - allowed - GLOBAL_OPTIONS)
    return [f"aws {service} {operation}: no option {option}" for option in unknown]


CUSTOM_COMMANDS_SERVICES = {service for service, _operation in CUSTOM_COMMANDS}


if __name__ == "__main__":
    found = [problem for command in json.load(sys.stdin) for problem in problems(command)]
    json.dump(found, sys.stdout)
