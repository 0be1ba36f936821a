"""The questions `sam deploy --guided` asks for a template, in order, with their defaults: SAM CLI's own code.

Runs under the tools venv's Python (`make tools`), without AWS:
`.venv-tools/bin/python tests/deploy/sam_guided_prompts.py template.yaml`
prints [[kind, prompt, default], ...] with kind "prompt" (a value) or "confirm" (yes/no).

It goes the way `sam deploy --guided` goes (GuidedContext.guided_prompts), answering every question
with its default. Only what needs an AWS account is stood in for: the managed stack's bucket
(`manage_stack`), the image repositories' companion stack (CompanionStackManager, which answers
that no repository exists yet, as on a first deploy) and the check for locally built images.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any
from unittest import mock

from samcli.commands._utils.template import get_template_parameters
from samcli.commands.deploy import guided_context

_BOLD = re.compile(r"\x1b\[[0-9;]*m")


class _FirstDeployRepositories:
    """CompanionStackManager on an account where this stack has no image repositories yet."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.functions: list[str] = []

    def set_functions(self, functions: list[str], _repositories: dict[str, str]) -> None:
        self.functions = functions

    def get_repository_mapping(self) -> dict[str, str]:
        return {
            function: f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{function.lower()}" for function in self.functions
        }

    def get_unreferenced_repos(self) -> list[str]:
        return []

    def get_repo_uri(self, repository: str) -> str:
        return repository

    def sync_repos(self) -> None:
        pass


def guided_prompts(template_path: str) -> list[tuple[str, str, Any]]:
    asked: list[tuple[str, str, Any]] = []

    def prompt(text: str, default: Any = None, **_kwargs: Any) -> Any:
        asked.append(("prompt", _BOLD.sub("", text).strip(), default))
        return default

    def confirm(text: str, default: Any = False, **_kwargs: Any) -> Any:
        asked.append(("confirm", _BOLD.sub("", text).strip(), default))
        return default

    context = guided_context.GuidedContext(
        template_file=template_path,
        stack_name=None,
        s3_bucket=None,
        image_repository=None,
        image_repositories=None,
        s3_prefix=None,
        region="us-east-1",
    )
    with (
        mock.patch.object(guided_context, "prompt", prompt),
        mock.patch.object(guided_context, "confirm", confirm),
        mock.patch.object(guided_context, "manage_stack", lambda **_kwargs: "aws-sam-cli-managed-default-bucket"),
        mock.patch.object(guided_context, "CompanionStackManager", _FirstDeployRepositories),
        mock.patch.object(guided_context.GuidedContext, "verify_images_exist_locally", staticmethod(lambda _f: None)),
        mock.patch("click.echo"),
        mock.patch("click.secho"),
    ):
        context.guided_prompts(get_template_parameters(template_file=template_path))
    return asked


if __name__ == "__main__":
    json.dump(guided_prompts(sys.argv[1]), sys.stdout, indent=1)
