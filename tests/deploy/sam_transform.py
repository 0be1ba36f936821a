"""Run the SAM transform CloudFormation runs at deploy on template.yaml, offline; print the result.

Runs under the tools venv's Python (`make tools`), whose aws-sam-translator is the one SAM CLI pins:
`.venv-tools/bin/python tests/deploy/sam_transform.py template.yaml '{"ApiAuth": "NONE"}'`.
Exit status 0 prints the transformed template as JSON; 2 prints the transform's rejection. Given a
JSON list of parameter sets, it transforms each (one interpreter start for all) and prints a list
of `{"template": ...}` or `{"rejected": "..."}`.

What it reproduces of a deploy: `sam deploy` uploads the image and writes each image function's
`ImageUri`; CloudFormation parses the template (short-form tags become `Ref`/`Fn::*` maps) and hands
it with the stack's parameter values to `samtranslator.translator.transform.transform`. Nothing is
resolved beforehand: conditions and `Fn::If` reach the translator as written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# What `sam deploy` writes: <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<function>-<image id>-<tag>.
ECR_REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/background-remover-8c5e7a1f/apifunction8c5e7a1frepo"


class OfflinePolicyLoader:
    """Stands in for ManagedPolicyLoader, which lists AWS managed policies through IAM.

    The translator asks it only to turn managed-policy *names* in `Policies` into ARNs; the roles it
    builds name their execution and X-Ray policies by ARN directly. A name missing here is passed
    through as written, as it would be by the real loader for a name IAM does not know.
    """

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        }


def with_image_uris(template: dict[str, Any]) -> dict[str, Any]:
    """The template as `sam deploy` uploads it: every image function points at its pushed image."""
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and properties.get("PackageType") == "Image":
            properties["ImageUri"] = f"{ECR_REPOSITORY}:{logical_id.lower()}-4f1d2c3b5a69-latest"
    return template


def transformed(template_path: Path, parameter_values: dict[str, str]) -> dict[str, Any]:
    template = with_image_uris(yaml_parse(template_path.read_text()))
    return transform(template, dict(parameter_values), OfflinePolicyLoader())


def _outcome(template_path: Path, parameters: dict[str, str]) -> dict[str, Any]:
    try:
        return {"template": transformed(template_path, parameters)}
    except InvalidDocumentException as error:
        return {"rejected": "\n".join(cause.message for cause in error.causes)}


def main(argv: list[str]) -> int:
    template_path, parameters = Path(argv[1]), json.loads(argv[2])
    if isinstance(parameters, list):
        json.dump([_outcome(template_path, each) for each in parameters], sys.stdout, sort_keys=True, default=str)
        return 0
    try:
        output = transformed(template_path, parameters)
    except InvalidDocumentException as error:
        print("\n".join(cause.message for cause in error.causes), file=sys.stderr)
        return 2
    json.dump(output, sys.stdout, indent=1, sort_keys=True, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
