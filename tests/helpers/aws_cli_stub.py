"""A stand-in for the AWS CLI (v2) for the README's first signed call: just the commands it runs.

The AWS CLI is not a PyPI package (v2), so the test puts this on the PATH as `aws`. It answers as the
CLI does, from the same sources: credentials and region through botocore's default chain (the
CLI's own), and `describe-stacks` from the stack outputs in $STUB_STACK_OUTPUTS (JSON), filtered
by the command's `--query` with jmespath, as the CLI filters it.

- `aws configure export-credentials --format env`: `export NAME=value` lines, the session token
  only when the credentials have one (https://docs.aws.amazon.com/cli/latest/reference/configure/export-credentials.html);
- `aws configure get region`: the configured region, or nothing and status 1;
- `aws cloudformation describe-stacks --stack-name NAME --query Q --output text`, for the stack
  named $STUB_STACK_NAME only.

Anything else exits with status 2 naming it, so that a README change that needs more fails loudly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import botocore.session
import jmespath


def main(argv: list[str]) -> int:
    if argv[:2] == ["configure", "export-credentials"]:
        return _export_credentials(argv[2:])
    if argv[:3] == ["configure", "get", "region"]:
        region = botocore.session.get_session().get_config_variable("region")
        if not region:
            return 1
        print(region)
        return 0
    if argv[:2] == ["cloudformation", "describe-stacks"]:
        return _describe_stacks(argv[2:])
    print(f"aws stub: not a command the README's first call uses: {' '.join(argv)}", file=sys.stderr)
    return 2


def _export_credentials(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aws configure export-credentials")
    parser.add_argument("--format", choices=["env"], required=True)
    parser.parse_args(args)
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        print("Unable to locate credentials", file=sys.stderr)
        return 253
    frozen = credentials.get_frozen_credentials()
    print(f"export AWS_ACCESS_KEY_ID={frozen.access_key}")
    print(f"export AWS_SECRET_ACCESS_KEY={frozen.secret_key}")
    if frozen.token:
        print(f"export AWS_SESSION_TOKEN={frozen.token}")
    return 0


def _describe_stacks(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aws cloudformation describe-stacks")
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--output", choices=["text"], required=True)
    options = parser.parse_args(args)
    if options.stack_name != os.environ["STUB_STACK_NAME"]:
        print(
            f"An error occurred (ValidationError): Stack with id {options.stack_name} does not exist", file=sys.stderr
        )
        return 254
    outputs = json.loads(os.environ["STUB_STACK_OUTPUTS"])
    response = {
        "Stacks": [
            {
                "StackName": options.stack_name,
                "Outputs": [{"OutputKey": key, "OutputValue": value} for key, value in outputs.items()],
            }
        ]
    }
    found = jmespath.search(options.query, response)
    # --output text prints a list's items tab-separated, and None as "None", as the CLI does.
    print("\t".join(map(str, found)) if isinstance(found, list) else str(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
