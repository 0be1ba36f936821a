"""template.yaml: checked by the real tools (offline), then what matters is asserted directly."""

from __future__ import annotations

import json
import os
import re
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


def test_memory_default_is_the_cheapest_size_that_fits_the_baked_model(template: dict[str, Any]) -> None:
    # The image bakes native DeformConv (handler/deform_bake.py); benchmarks/deform_standin.py
    # measured that model's peak on BiRefNet-lite's layers and priced each memory size with 1 GB of
    # headroom for the photo. The default must be the cheapest size that fits it.
    measured = json.loads((ROOT / "benchmarks" / "results" / "deform.json").read_text())
    native = [row for row in measured["lambda_sizing"] if row["export"].startswith("native") and row["fits"]]
    cheapest = min(native, key=lambda row: (row["usd_per_1000_images"], row["memory_mb"]))
    memory = template["Parameters"]["MemorySize"]
    assert memory["Default"] == cheapest["memory_mb"]
    assert memory["MinValue"] <= memory["Default"] <= memory["MaxValue"] == 10240  # 10240 fits the decomposed model
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


# --- Security, asserted rather than only written (issue #7, "Abuse") ---------------------------

OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _sub_text(resource: Any) -> str:
    """The text of a `!Sub` resource ARN, or '' for anything else."""
    return resource["Fn::Sub"] if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str) else ""


def test_every_route_is_behind_iam_auth_by_default(template: dict[str, Any]) -> None:
    auth = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["EnableIamAuthorizer"] is True
    # The default authorizer is AWS_IAM unless the deployer explicitly chose ApiAuth=NONE.
    assert auth["DefaultAuthorizer"] == {"Fn::If": ["IamAuth", "AWS_IAM", {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["ApiAuth"]["Default"] == "IAM"
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        properties = function["Properties"]
        # No route opts out of the default, and no side door: a Function URL would bypass the API.
        for event in properties.get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert "Auth" not in event["Properties"], f"{name}: a route overrides the API's auth"
                assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
        assert "FunctionUrlConfig" not in properties, f"{name}: a Function URL bypasses the API's auth"
    assert not _resources(template, "AWS::Lambda::Url")
    assert not _resources(template, "AWS::Serverless::Api"), "a second API would need its own auth"
    for permission in _resources(template, "AWS::Lambda::Permission").values():
        assert permission["Properties"]["Principal"] != "*"


def test_api_throttling_is_set_from_parameters(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
    }
    for parameter in ("ApiThrottleRate", "ApiThrottleBurst"):
        assert template["Parameters"][parameter]["Type"] == "Number"
        assert template["Parameters"][parameter]["Default"] > 0


@pytest.mark.parametrize(
    ("function", "parameter"), [("ApiFunction", "ApiReservedConcurrency"), ("JobsFunction", "JobsReservedConcurrency")]
)
def test_both_functions_have_reserved_concurrency_from_a_parameter(
    template: dict[str, Any], function: str, parameter: str
) -> None:
    properties = template["Resources"][function]["Properties"]
    assert properties["ReservedConcurrentExecutions"] == {"Ref": parameter}
    assert template["Parameters"][parameter]["Default"] >= template["Parameters"][parameter]["MinValue"] >= 1


def test_every_bucket_is_private_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    buckets = _resources(template, "AWS::S3::Bucket")
    assert set(buckets) == {"InputBucket", "OutputBucket"}
    policies = _resources(template, "AWS::S3::BucketPolicy").values()
    for name, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
        assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        (policy,) = [p["Properties"] for p in policies if p["Properties"]["Bucket"] == {"Ref": name}]
        denials = [
            statement
            for statement in policy["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        (denial,) = denials
        assert denial["Principal"] == "*" and denial["Action"] == "s3:*"
        # The bucket and every object in it.
        assert denial["Resource"] == [{"Fn::GetAtt": [name, "Arn"]}, {"Fn::Sub": f"${{{name}.Arn}}/*"}]


def test_failure_queue_is_encrypted(template: dict[str, Any]) -> None:
    assert template["Resources"]["FailureQueue"]["Properties"]["SqsManagedSseEnabled"] is True


def test_every_statement_names_its_actions_and_scopes_its_resources(template: dict[str, Any]) -> None:
    known = {"InputBucket", "OutputBucket"}
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        policies = function["Properties"]["Policies"]
        # Besides inline statements, only SAM's queue-scoped send policy for the failure queue.
        templates = [policy for policy in policies if "Statement" not in policy]
        assert all(set(policy) == {"SQSSendMessagePolicy"} for policy in templates), templates
        for policy in templates:
            assert policy["SQSSendMessagePolicy"] == {"QueueName": {"Fn::GetAtt": ["FailureQueue", "QueueName"]}}
        for statement in _statements(function):
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            actions = _as_list(statement["Action"])
            assert all(action.startswith("s3:") and "*" not in action for action in actions), actions
            for resource in _as_list(statement["Resource"]):
                if set(actions) <= OBJECT_ACTIONS:
                    # Objects: one bucket, under a fixed, non-empty prefix.
                    text = _sub_text(resource)
                    bucket, _, prefix = text.partition(".Arn}/")
                    assert bucket.lstrip("${") in known, f"{name}: {resource}"
                    assert prefix.endswith("*") and prefix.rstrip("*"), f"{name}: objects of a whole bucket: {text}"
                    assert "*" not in prefix.rstrip("*"), f"{name}: wildcard inside the prefix: {text}"
                else:
                    # Bucket-level (ListBucket): the bucket ARN itself, narrowed to prefixes by a condition.
                    assert actions == ["s3:ListBucket"], f"{name}: {actions}"
                    assert resource["Fn::GetAtt"][0] in known and resource["Fn::GetAtt"][1] == "Arn"
                    assert set(statement["Condition"]) == {"StringLike"}
                    assert all(prefix for prefix in _as_list(statement["Condition"]["StringLike"]["s3:prefix"]))


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [("uploads/", True), ("a/b/", True), ("", False), ("*", False), ("up*/", False), ("/uploads/", False), ("uploads", False)],
)
def test_input_prefix_cannot_widen_the_policies_to_the_whole_bucket(
    template: dict[str, Any], prefix: str, allowed: bool
) -> None:
    parameter = template["Parameters"]["InputPrefix"]
    assert (re.fullmatch(parameter["AllowedPattern"], prefix) is not None) == allowed
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])


def test_no_function_can_write_where_uploads_trigger_it(template: dict[str, Any]) -> None:
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        for statement in _statements(function):
            if "s3:PutObject" in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    assert "InputBucket" not in json.dumps(resource), f"{name} may write to the input bucket"
    # The output bucket never triggers anything: only the input bucket sends events.
    assert "NotificationConfiguration" not in template["Resources"]["OutputBucket"]["Properties"]
    events = template["Resources"]["JobsFunction"]["Properties"]["Events"]
    assert [event["Type"] for event in events.values()] == ["EventBridgeRule"]
    assert not _resources(template, "AWS::Events::Rule")
    # Lambda's own loop detection is on for every function, and none turns it off.
    assert template["Globals"]["Function"]["RecursiveLoop"] == "Terminate"
    for function in _resources(template, "AWS::Serverless::Function").values():
        assert function["Properties"].get("RecursiveLoop", "Terminate") == "Terminate"


def test_presigned_link_lifetime_is_a_bounded_parameter(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["PresignedUrlExpiry"]
    assert parameter["MaxValue"] == 604800  # SigV4's limit, which handler.config enforces too
    assert 0 < parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"]
    variables = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["PRESIGNED_URL_EXPIRY"] == {"Ref": "PresignedUrlExpiry"}
