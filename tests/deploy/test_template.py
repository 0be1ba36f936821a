"""template.yaml as written: the real tools' offline checks, parameters, and the resources SAM passes through.

What SAM generates (API routes and auth, roles, the rule and its dead-letter queue) is asserted on
the transformed template in test_transform.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handler.core.image.limits import DEFAULT_MAX_INPUT_PIXELS

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


def test_two_functions_share_one_image_with_their_own_entry_points(template: dict[str, Any]) -> None:
    functions = _resources(template, "AWS::Serverless::Function")
    commands = {name: body["Properties"]["ImageConfig"]["Command"] for name, body in functions.items()}
    assert commands == {"ApiFunction": ["handler.api.lambda_handler"], "JobsFunction": ["handler.jobs.lambda_handler"]}
    assert {body["Metadata"]["Dockerfile"] for body in functions.values()} == {"Dockerfile"}
    assert all(body["Properties"]["PackageType"] == "Image" for body in functions.values())


def test_api_timeout_is_within_api_gateway_limit_and_jobs_have_longer(template: dict[str, Any]) -> None:
    functions = _resources(template, "AWS::Serverless::Function")
    assert functions["ApiFunction"]["Properties"]["Timeout"] < 30
    jobs = functions["JobsFunction"]["Properties"]
    assert jobs["Timeout"] > functions["ApiFunction"]["Properties"]["Timeout"]


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


def test_api_auth_is_a_choice_defaulting_to_iam_and_routes_are_the_api_s(template: dict[str, Any]) -> None:
    # How each choice shows in the deployed API is asserted on the transformed template (test_transform.py).
    assert template["Parameters"]["ApiAuth"]["Default"] == "IAM"
    assert template["Parameters"]["ApiAuth"]["AllowedValues"] == ["IAM", "NONE"]
    routes = {
        (event["Properties"]["Method"], event["Properties"]["Path"])
        for event in template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    }
    assert routes == {
        ("POST", "/remove"),
        ("POST", "/mask"),
        ("POST", "/v1.0/removebg"),
        ("GET", "/v1.0/account"),
        ("POST", "/uploads"),
        ("GET", "/results/{id}"),
    }


def test_input_and_output_buckets_differ_so_outputs_cannot_retrigger(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["INPUT_BUCKET"] == {"Ref": "InputBucket"}
    assert variables["OUTPUT_BUCKET"] == {"Ref": "OutputBucket"}
    assert template["Globals"]["Function"]["RecursiveLoop"] == "Terminate"
    rule = template["Resources"]["UploadRule"]["Properties"]["EventPattern"]
    assert rule["detail"]["bucket"]["name"] == [{"Ref": "InputBucket"}]
    assert rule["detail"]["object"]["key"] == [{"prefix": {"Ref": "InputPrefix"}}]


def test_api_results_expire(template: dict[str, Any]) -> None:
    expiring = {
        name: [rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in rule]
        for name, bucket in _resources(template, "AWS::S3::Bucket").items()
    }
    # The inline API's large results, and the upload flow's records and outputs.
    assert {rule["Prefix"] for rule in expiring["OutputBucket"]} == {
        "api/",
        "results/",
        "cutouts/api-uploads/",
        "masks/api-uploads/",
    }
    (uploads,) = expiring["InputBucket"]
    assert uploads["Prefix"] == {"Fn::Sub": "${InputPrefix}api-uploads/"}
    for rule in [*expiring["OutputBucket"], uploads]:
        assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == {"Ref": "ApiResultExpiryDays"}
    assert template["Parameters"]["ApiResultExpiryDays"]["MinValue"] >= 1


def test_outputs_name_what_users_need(template: dict[str, Any]) -> None:
    assert {"ApiUrl", "InputBucketName", "OutputBucketName", "ApiFunctionName", "JobsFunctionName"} <= set(
        template["Outputs"]
    )


# --- Security settings that SAM passes through unchanged (the rest: test_transform.py) -------------


def test_api_throttling_parameters_are_positive_numbers(template: dict[str, Any]) -> None:
    # Their use by the API's stage is asserted on the transformed template (test_transform.py).
    for parameter in ("ApiThrottleRate", "ApiThrottleBurst"):
        assert template["Parameters"][parameter]["Type"] == "Number"
        assert template["Parameters"][parameter]["Default"] > 0


# A new AWS account's Lambda quotas, commonly: memory per function, and concurrent executions, of which
# this many must stay unreserved (so no reservation at all fits). AWS raises them with use.
NEW_ACCOUNT_MEMORY_MB = 3008
NEW_ACCOUNT_UNRESERVED = 10


def test_the_defaults_fit_a_new_account_s_quotas(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["MemorySize"]["Default"] <= NEW_ACCOUNT_MEMORY_MB
    # No reservation by default (what 0 means is asserted on the transformed template, test_transform.py)
    for parameter in ("ApiReservedConcurrency", "JobsReservedConcurrency"):
        assert parameters[parameter]["Default"] == parameters[parameter]["MinValue"] == 0, parameter
    # The API's throttling bounds the bill instead: a burst fits in what a new account may run at once
    assert 0 < parameters["ApiThrottleRate"]["Default"] <= parameters["ApiThrottleBurst"]["Default"]
    assert parameters["ApiThrottleBurst"]["Default"] <= NEW_ACCOUNT_UNRESERVED


def test_the_default_memory_holds_the_largest_photo_with_a_margin(template: dict[str, Any]) -> None:
    # benchmarks/lambda_memory.py: each function run as Lambda runs it, with a stand-in of the baked
    # BiRefNet-lite, on photos up to MAX_INPUT_PIXELS, at the template's default memory size.
    measured = json.loads((ROOT / "benchmarks" / "results" / "lambda_memory.json").read_text())
    default = template["Parameters"]["MemorySize"]["Default"]
    rows = [
        row
        for run in measured["runs"]
        if run["this_checkout"] and run["baked"]["native_deform"]
        for row in run["results"]
        if row["memory_mb"] == default
    ]
    largest = max(row["pixels"] for row in rows)
    assert largest >= 0.99 * DEFAULT_MAX_INPUT_PIXELS, "measure the largest photo the limit lets in"
    peak = max(max(row["peaks_by_invocation_mb"]) for row in rows)
    assert all(row["outcome"].startswith(("processed 1", "HTTP")) for row in rows if row["pixels"])
    # The model's own peak varies from run to run: keep a sixth of the memory to spare.
    assert peak <= default * 5 / 6, f"{peak} MB measured against {default} MB"


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


def test_both_queues_are_encrypted(template: dict[str, Any]) -> None:
    for queue in ("UploadQueue", "FailureQueue"):
        assert template["Resources"][queue]["Properties"]["SqsManagedSseEnabled"] is True, queue


def test_no_browser_may_upload_until_an_origin_is_named(template: dict[str, Any]) -> None:
    origins = template["Parameters"]["UploadCorsOrigins"]
    assert origins["Type"] == "CommaDelimitedList" and origins["Default"] == ""
    # How the empty default shows in the buckets (no CORS) is asserted on the transformed template.


def test_source_reads_are_off_by_default_and_never_the_whole_bucket(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["ApiSourcePrefix"]
    assert parameter["Default"] == ""
    for prefix, allowed in [("", True), ("sources/", True), ("*", False), ("/", False), ("sources", False)]:
        assert (re.fullmatch(parameter["AllowedPattern"], prefix) is not None) == allowed, prefix
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert "SOURCE_BUCKETS" not in variables
    api = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert api["SOURCE_PREFIX"] == {"Ref": "ApiSourcePrefix"}


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        ("uploads/", True),
        ("a/b/", True),
        ("", False),
        ("*", False),
        ("up*/", False),
        ("/uploads/", False),
        ("uploads", False),
    ],
)
def test_input_prefix_cannot_widen_the_policies_to_the_whole_bucket(
    template: dict[str, Any], prefix: str, allowed: bool
) -> None:
    parameter = template["Parameters"]["InputPrefix"]
    assert (re.fullmatch(parameter["AllowedPattern"], prefix) is not None) == allowed
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])


def test_presigned_link_lifetime_is_a_bounded_parameter(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["PresignedUrlExpiry"]
    assert parameter["MaxValue"] == 604800  # SigV4's limit, which handler.config enforces too
    assert 0 < parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"]
    variables = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["PRESIGNED_URL_EXPIRY"] == {"Ref": "PresignedUrlExpiry"}
