"""The environment `sam local invoke --env-vars FILE` gives each function, computed by SAM CLI's own code.

Runs under the tools venv's Python (`make tools`), without Docker:
`.venv-tools/bin/python tests/deploy/sam_local_env.py template.yaml local-env.json`
prints {function logical id: {variable: value}} for the variables template.yaml declares.

It goes the way `sam local invoke` goes: the env-vars file is read by InvokeContext, the template's
functions come from SamLocalStackProvider/SamFunctionProvider (which is where a `!Ref OutputBucket`
becomes the text "OutputBucket"), and LocalLambdaRunner merges the file's values over them. Only the
container start is skipped.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from samcli.commands.local.cli_common.invoke_context import InvokeContext
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

# AWS_* variables come from SAM CLI and the caller's credentials, not from the template or the file.
_SAM_CLI_OWN = ("AWS_", "_HANDLER", "_X_AMZN")


def function_environments(template_path: str, env_vars_path: str) -> dict[str, dict[str, Any]]:
    stacks, _ = SamLocalStackProvider.get_stacks(template_path)
    provider = SamFunctionProvider(stacks)
    runner = LocalLambdaRunner(
        local_runtime=None,  # never started: only the environment is built
        function_provider=provider,
        cwd=".",
        real_path=".",
        env_vars_values=InvokeContext._get_env_vars_value(env_vars_path),
    )
    environments = {}
    for function in provider.get_all():
        resolved = runner._make_env_vars(function).resolve()
        environments[function.name] = {
            name: value for name, value in resolved.items() if not name.startswith(_SAM_CLI_OWN)
        }
    return environments


if __name__ == "__main__":
    json.dump(function_environments(sys.argv[1], sys.argv[2]), sys.stdout, indent=1, sort_keys=True)
