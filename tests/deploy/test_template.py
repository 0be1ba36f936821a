"""template.yaml: checked by the real tools (offline), then what matters is asserted directly."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cfn_lint_passes(tool: Callable[[str], Path]) -> None:
    result = _run([str(tool("cfn-lint")), "template.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes(tool: Callable[[str], Path]) -> None:
    result = _run([str(tool("sam")), "validate", "--lint", "-t", "template.yaml", "--region", "us-east-1"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def _statements(function: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in function["Properties"].get("Policies", []):
        yield from policy.get("Statement", [])


def test_two_functions_share_one_image_with_their_own_entry_points(template: dict[str, Any]) -> None:
    functions = _resources(template, "AWS::Serverless::Function")
    commands = {name: body["Properties"]["ImageConfig"]["Command"] for name, body in functions.items()}
    assert commands == {"ApiFunction": ["handler.api.lambda_handler"], "JobsFunction": ["handler.jobs.lambda_handler"]}
    assert {body["Metadata"]["Dockerfile"] for body in functions.values()} == {"Dockerfile"}
    assert all(body["Properties"]["PackageType"] == "Image" for body in functions.values())


def test_api_timeout_is_within_api_gateway_limit_and_jobs_are_capped(template: dict[str, Any]) -> None:
    functions = _resources(template, "AWS::Serverless::Function")
    assert functions["ApiFunction"]["Properties"]["Timeout"] < 30
    jobs = functions["JobsFunction"]["Properties"]
    assert jobs["Timeout"] > functions["ApiFunction"]["Properties"]["Timeout"]
    assert jobs["ReservedConcurrentExecutions"] == {"Ref": "JobsReservedConcurrency"}


def test_memory_default_fits_the_measured_peak(template: dict[str, Any]) -> None:
    # ~7.0 GB measured peak for BiRefNet-lite's default export with enable_mem_pattern=False.
    memory = template["Parameters"]["MemorySize"]
    assert 7168 < memory["Default"] <= 10240
    assert template["Globals"]["Function"]["MemorySize"] == {"Ref": "MemorySize"}


def test_api_is_authenticated_by_default_and_throttled(template: dict[str, Any]) -> None:
    assert template["Parameters"]["ApiAuth"]["Default"] == "IAM"
    api = template["Resources"]["HttpApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"]["Fn::If"][1] == "AWS_IAM"
    assert template["Conditions"]["IamAuth"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "IAM"]}
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(api["DefaultRouteSettings"])
    routes = {
        (event["Properties"]["Method"], event["Properties"]["Path"])
        for event in template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    }
    assert routes == {("POST", "/remove"), ("POST", "/mask")}


@pytest.mark.parametrize("bucket", ["InputBucket", "OutputBucket"])
def test_buckets_are_private_encrypted_and_tls_only(template: dict[str, Any], bucket: str) -> None:
    properties = template["Resources"][bucket]["Properties"]
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policies = [
        body["Properties"]
        for body in _resources(template, "AWS::S3::BucketPolicy").values()
        if body["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (policy,) = policies
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_input_and_output_buckets_differ_so_outputs_cannot_retrigger(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["INPUT_BUCKET"] == {"Ref": "InputBucket"}
    assert variables["OUTPUT_BUCKET"] == {"Ref": "OutputBucket"}
    assert template["Globals"]["Function"]["RecursiveLoop"] == "Terminate"
    rule = template["Resources"]["JobsFunction"]["Properties"]["Events"]["Upload"]["Properties"]["Pattern"]
    assert rule["detail"]["bucket"]["name"] == [{"Ref": "InputBucket"}]
    assert rule["detail"]["object"]["key"] == [{"prefix": {"Ref": "InputPrefix"}}]


def test_api_results_expire(template: dict[str, Any]) -> None:
    (rule,) = template["Resources"]["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "api/" and rule["Status"] == "Enabled"


def test_policies_are_least_privilege(template: dict[str, Any]) -> None:
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        for statement in _statements(function):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), f"{name}: wildcard action {actions}"
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                text = json.dumps(resource)
                assert text != '"*"', f"{name}: wildcard resource"
                if any(action.startswith("s3:Put") for action in actions):
                    # Writes only into the output bucket, and only under a fixed prefix.
                    assert "OutputBucket.Arn}/" in text, f"{name}: write outside the output bucket: {text}"
                    assert "OutputBucket.Arn}/*" not in text, f"{name}: write to the whole output bucket"


def test_failures_go_to_a_queue(template: dict[str, Any]) -> None:
    jobs = template["Resources"]["JobsFunction"]["Properties"]
    assert jobs["EventInvokeConfig"]["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["FailureQueue", "Arn"]},
    }
    assert jobs["Events"]["Upload"]["Properties"]["DeadLetterConfig"]["Destination"] == {
        "Fn::GetAtt": ["FailureQueue", "Arn"]
    }


def test_outputs_name_what_users_need(template: dict[str, Any]) -> None:
    assert {"ApiUrl", "InputBucketName", "OutputBucketName", "ApiFunctionName", "JobsFunctionName"} <= set(
        template["Outputs"]
    )
