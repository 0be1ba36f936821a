"""template.yaml as CloudFormation deploys it: SAM's transform run for every choice the parameters
allow, cfn-lint on what it produces, and the security and wiring asserted on the produced resources.

The input template says what we asked SAM for; the transformed one is what gets created. The two
differ where SAM ignores or rewrites a property (a rule's `DeadLetterConfig.Destination`, an
`Fn::If` where a literal is required), so these assertions read the transformed output.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cloudformation import (
    ROOT,
    TransformRejected,
    load_template,
    resolve_conditions,
    tool_environment,
    transform,
)

_PARAMETERS = load_template()["Parameters"]
# Every allowed value of every parameter that is a choice, in every combination.
_CHOICES = {name: spec["AllowedValues"] for name, spec in _PARAMETERS.items() if "AllowedValues" in spec}
COMBINATIONS = [dict(zip(_CHOICES, values, strict=False)) for values in itertools.product(*_CHOICES.values())]
_IDS = [",".join(f"{name}={value}" for name, value in combination.items()) for combination in COMBINATIONS]

BUCKETS = {"InputBucket", "OutputBucket"}
# Where each function may write in the output bucket: fixed prefixes.
WRITABLE_PREFIXES = {"api/", "cutouts/", "masks/", "results/"}
# The one place in the input bucket a role may write: the API's, for the forms POST /uploads signs.
UPLOAD_FORMS = ("InputBucket", "${InputPrefix}uploads/")
OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject"}
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
FAILURE_QUEUE_ARN = {"Fn::GetAtt": ["FailureQueue", "Arn"]}
IAM_SECURITY: list[dict[str, list[str]]] = [{"AWS_IAM": []}]


@pytest.fixture(scope="module")
def transformed() -> Callable[[dict[str, str]], dict[str, Any]]:
    """The raw transform output per combination, computed once; a rejection fails the test using it."""
    cache: dict[str, dict[str, Any] | TransformRejected] = {}

    def get(combination: dict[str, str]) -> dict[str, Any]:
        key = json.dumps(combination, sort_keys=True)
        if key not in cache:
            try:
                cache[key] = transform(combination)
            except TransformRejected as rejection:
                cache[key] = rejection
        outcome = cache[key]
        if isinstance(outcome, TransformRejected):
            pytest.fail(f"the SAM transform rejects template.yaml for {combination}: {outcome}")
        return outcome

    return get


@pytest.fixture(params=COMBINATIONS, ids=_IDS)
def combination(request: pytest.FixtureRequest) -> dict[str, str]:
    return request.param


@pytest.fixture
def deployed(transformed: Callable[[dict[str, str]], dict[str, Any]], combination: dict[str, str]) -> dict[str, Any]:
    """The resources CloudFormation creates for this combination (conditions applied)."""
    return resolve_conditions(transformed(combination), combination)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_choice_parameter_is_covered() -> None:
    # The combinations come from the template; this pins that both choices exist to be combined.
    assert {"ApiAuth", "Architecture", "RemoveBgApiKeys"} <= set(_CHOICES)
    assert len(COMBINATIONS) == len(list(itertools.product(*_CHOICES.values()))) >= 8


def test_transform_accepts_the_template(
    transformed: Callable[[dict[str, str]], dict[str, Any]], combination: dict[str, str]
) -> None:
    output = transformed(combination)
    assert "Transform" not in output
    assert not [body["Type"] for body in output["Resources"].values() if body["Type"].startswith("AWS::Serverless::")]


def test_cfn_lint_passes_on_the_transformed_template(
    transformed: Callable[[dict[str, str]], dict[str, Any]],
    combination: dict[str, str],
    tool: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    _assert_cfn_lint_passes(transformed(combination), tool, tmp_path)


def _assert_cfn_lint_passes(template: dict[str, Any], tool: Callable[[str], Path], tmp_path: Path) -> None:
    path = tmp_path / "transformed.json"
    path.write_text(json.dumps(template, indent=1))
    result = subprocess.run(
        [str(tool("cfn-lint")), "--", str(path)],
        cwd=ROOT,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_function_runs_the_pushed_image(deployed: dict[str, Any]) -> None:
    functions = _resources(deployed, "AWS::Lambda::Function")
    assert set(functions) == {"ApiFunction", "JobsFunction"}
    for name, function in functions.items():
        assert function["Properties"]["PackageType"] == "Image"
        assert ".dkr.ecr." in function["Properties"]["Code"]["ImageUri"], name


# --- The API: every route and how it is authorised ----------------------------------------------


def _operations(body: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in body["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method.upper(), path, operation


def test_every_route_demands_iam_unless_none_was_chosen(deployed: dict[str, Any], combination: dict[str, str]) -> None:
    apis = _resources(deployed, "AWS::ApiGatewayV2::Api")
    assert set(apis) == {"HttpApi"}, "a second API would need its own auth"
    # Routes exist only in the API's OpenAPI body: no route, authorizer or other API beside it
    # (the remove.bg REST API, only when chosen, is checked below).
    for kind in ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Authorizer", "AWS::ApiGateway::Authorizer"):
        assert not _resources(deployed, kind), kind
    rest_apis = set(_resources(deployed, "AWS::ApiGateway::RestApi"))
    assert rest_apis == ({"RemoveBgApi"} if combination["RemoveBgApiKeys"] == "ENABLED" else set())
    # No side door: a Function URL would bypass the API's auth.
    assert not _resources(deployed, "AWS::Lambda::Url")

    body = apis["HttpApi"]["Properties"]["Body"]
    assert "security" not in body, "an API-wide security block would apply to routes not checked below"
    routes = {(method, path): operation for method, path, operation in _operations(body)}
    for route, operation in routes.items():
        assert operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"].endswith(
            "/functions/${ApiFunction.Arn}/invocations"
        ), route
        if combination["ApiAuth"] == "IAM":
            assert operation.get("security") == IAM_SECURITY, f"{route} does not demand IAM"
        else:
            assert "security" not in operation, f"{route}: ApiAuth=NONE did not take effect"
    assert set(routes) == {
        ("POST", "/remove"),
        ("POST", "/mask"),
        ("POST", "/v1.0/removebg"),
        ("GET", "/v1.0/account"),
        ("POST", "/uploads"),
        ("GET", "/results/{id}"),
    }
    if combination["ApiAuth"] == "IAM":
        scheme = body["components"]["securitySchemes"]["AWS_IAM"]
        assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_the_default_is_iam() -> None:
    assert _PARAMETERS["ApiAuth"]["Default"] == "IAM"
    # API keys for remove.bg's clients are a deliberate choice at deploy time
    assert _PARAMETERS["RemoveBgApiKeys"]["Default"] == "DISABLED"


def _template_json(template: str) -> dict[str, Any]:
    """A gateway response template with API Gateway's `$context.error.messageString` (a JSON string)."""
    return json.loads(template.replace("$context.error.messageString", '"message"'))


def test_remove_bg_api_demands_an_api_key_in_x_api_key_throttled_per_key(
    deployed: dict[str, Any], combination: dict[str, str]
) -> None:
    if combination["RemoveBgApiKeys"] != "ENABLED":
        # Nothing of API Gateway's REST flavour exists unless chosen
        assert not [
            name for name, body in deployed["Resources"].items() if body["Type"].startswith("AWS::ApiGateway::")
        ]
        return
    api = deployed["Resources"]["RemoveBgApi"]["Properties"]
    body = api["Body"]
    assert "security" not in body, "an API-wide security block would apply to routes not checked below"
    routes = {(method, path): operation for method, path, operation in _operations(body)}
    # remove.bg's two routes, to the API function, each demanding the key
    assert set(routes) == {("POST", "/v1.0/removebg"), ("GET", "/v1.0/account")}
    for operation in routes.values():
        assert operation["security"] == [{"api_key": []}]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST"
        assert integration["uri"]["Fn::Sub"].endswith("/functions/${ApiFunction.Arn}/invocations")
    assert body["components"]["securitySchemes"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert api.get("ApiKeySourceType", "HEADER") == "HEADER"
    # Throttled per key (a usage plan's limits apply to each of its keys), on this API's stage
    (plan,) = _resources(deployed, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {
        "RateLimit": {"Ref": "RemoveBgKeyRate"},
        "BurstLimit": {"Ref": "RemoveBgKeyBurst"},
    }
    assert plan["Properties"]["Quota"] == {"Limit": {"Ref": "RemoveBgKeyDailyQuota"}, "Period": "DAY"}
    ((stage_name, stage),) = _resources(deployed, "AWS::ApiGateway::Stage").items()
    assert plan["Properties"]["ApiStages"] == [{"ApiId": {"Ref": "RemoveBgApi"}, "Stage": {"Ref": stage_name}}]
    # ... and across all keys as the HTTP API is
    assert stage["Properties"]["MethodSettings"] == [
        {
            "HttpMethod": "*",
            "ResourcePath": "/*",
            "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
        }
    ]
    (membership,) = _resources(deployed, "AWS::ApiGateway::UsagePlanKey").values()
    (key_name,) = _resources(deployed, "AWS::ApiGateway::ApiKey")
    assert membership["Properties"]["KeyId"] == {"Ref": key_name}
    # The gateway's own refusals in remove.bg's error shape and statuses: 403 only for the key, 402 for
    # a spent quota, 429 (with Retry-After) for the rate limit, 400 for what it refuses of a request
    responses = body["x-amazon-apigateway-gateway-responses"]
    for name, response in responses.items():
        (error,) = _template_json(response["responseTemplates"]["application/json"])["errors"]
        assert set(error) == {"title", "code", "detail"}, name
    statuses = {name: response.get("statusCode") for name, response in responses.items()}
    assert statuses == {
        "INVALID_API_KEY": "403",
        "MISSING_AUTHENTICATION_TOKEN": "404",
        "THROTTLED": "429",
        "QUOTA_EXCEEDED": "402",
        "REQUEST_TOO_LARGE": "400",
        "UNSUPPORTED_MEDIA_TYPE": "400",
        "DEFAULT_4XX": None,
        "DEFAULT_5XX": None,
    }
    codes = {
        name: _template_json(response["responseTemplates"]["application/json"])["errors"][0]["code"]
        for name, response in responses.items()
    }
    assert codes["INVALID_API_KEY"] == "auth_failed" and codes["REQUEST_TOO_LARGE"] == "file_too_large"
    assert responses["THROTTLED"]["responseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}
    # The function is told keys are in use: it reads each key's plan and usage for remove.bg's figures
    variables = deployed["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["REMOVEBG_API_KEYS"] == {"Ref": "RemoveBgApiKeys"}


def test_the_function_may_read_usage_plans_only_with_remove_bg_keys(
    deployed: dict[str, Any], combination: dict[str, str]
) -> None:
    statements = [
        statement
        for statement in _statements(deployed["Resources"]["ApiFunctionRole"])
        if "apigateway" in json.dumps(statement)
    ]
    if combination["RemoveBgApiKeys"] != "ENABLED":
        assert statements == []
        return
    (statement,) = statements
    # Read-only (GET), and of usage plans and their usage only
    assert statement["Action"] == "apigateway:GET"
    resources = [resource["Fn::Sub"] for resource in statement["Resource"]]
    assert [resource.rsplit("::", 1)[1] for resource in resources] == ["/usageplans", "/usageplans/*/usage"]


def test_only_api_gateway_and_the_upload_rule_may_invoke(deployed: dict[str, Any], combination: dict[str, str]) -> None:
    permissions = _resources(deployed, "AWS::Lambda::Permission")
    principals = {name: body["Properties"]["Principal"] for name, body in permissions.items()}
    expected = {
        "ApiFunctionRemovePermission": "apigateway.amazonaws.com",
        "ApiFunctionMaskPermission": "apigateway.amazonaws.com",
        "ApiFunctionRemoveBgPermission": "apigateway.amazonaws.com",
        "ApiFunctionRemoveBgAccountPermission": "apigateway.amazonaws.com",
        "ApiFunctionUploadsPermission": "apigateway.amazonaws.com",
        "ApiFunctionResultsPermission": "apigateway.amazonaws.com",
        "JobsFunctionUploadPermission": "events.amazonaws.com",
    }
    if combination["RemoveBgApiKeys"] == "ENABLED":
        expected["RemoveBgApiPermission"] = "apigateway.amazonaws.com"
        expected["RemoveBgAccountPermission"] = "apigateway.amazonaws.com"
        # The REST API may invoke for its two routes and methods only
        source = permissions["RemoveBgApiPermission"]["Properties"]["SourceArn"]["Fn::Sub"]
        assert source.endswith(":${RemoveBgApi}/*/POST/v1.0/removebg")
        source = permissions["RemoveBgAccountPermission"]["Properties"]["SourceArn"]["Fn::Sub"]
        assert source.endswith(":${RemoveBgApi}/*/GET/v1.0/account")
    assert principals == expected
    for name in (
        "ApiFunctionRemovePermission",
        "ApiFunctionMaskPermission",
        "ApiFunctionRemoveBgPermission",
        "ApiFunctionRemoveBgAccountPermission",
        "ApiFunctionUploadsPermission",
        "ApiFunctionResultsPermission",
    ):
        source, values = permissions[name]["Properties"]["SourceArn"]["Fn::Sub"]
        assert values["__ApiId__"] == {"Ref": "HttpApi"}, name
    upload = permissions["JobsFunctionUploadPermission"]["Properties"]
    assert upload["SourceArn"] == {"Fn::GetAtt": ["JobsFunctionUpload", "Arn"]}


# --- Concurrency: none reserved unless asked for (a new account's quota may allow no reservation) --

RESERVATIONS = {"ApiFunction": "ApiReservedConcurrency", "JobsFunction": "JobsReservedConcurrency"}


def test_no_function_reserves_concurrency_by_default(deployed: dict[str, Any]) -> None:
    # A new account's concurrency quota can be 10, and 10 must stay unreserved: any reservation fails.
    for name, function in _resources(deployed, "AWS::Lambda::Function").items():
        assert "ReservedConcurrentExecutions" not in function["Properties"], name


@pytest.mark.parametrize("value", ["0", "3"])
def test_a_reservation_is_made_only_for_a_positive_value(
    transformed: Callable[[dict[str, str]], dict[str, Any]],
    tool: Callable[[str], Path],
    tmp_path: Path,
    value: str,
) -> None:
    given = dict.fromkeys(RESERVATIONS.values(), value)
    output = transformed(given)  # the transform CloudFormation runs accepts the condition
    _assert_cfn_lint_passes(output, tool, tmp_path)
    functions = _resources(resolve_conditions(output, given), "AWS::Lambda::Function")
    for name, parameter in RESERVATIONS.items():
        reserved = functions[name]["Properties"].get("ReservedConcurrentExecutions")
        assert reserved == (None if value == "0" else {"Ref": parameter}), name


def test_api_throttling_comes_from_the_parameters(deployed: dict[str, Any]) -> None:
    (stage,) = _resources(deployed, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
    }


# --- Failures: where undeliverable events and failed invocations end up -------------------------


def test_the_upload_rule_dead_letters_into_failure_queue(deployed: dict[str, Any]) -> None:
    rules = _resources(deployed, "AWS::Events::Rule")
    assert set(rules) == {"JobsFunctionUpload"}
    (target,) = rules["JobsFunctionUpload"]["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["JobsFunction", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": FAILURE_QUEUE_ARN}
    # Our queue (encrypted, 14 days' retention), not one SAM made on the side.
    assert set(_resources(deployed, "AWS::SQS::Queue")) == {"FailureQueue"}


def test_eventbridge_may_send_to_failure_queue_for_the_upload_rule_only(deployed: dict[str, Any]) -> None:
    policies = [
        body["Properties"]
        for body in _resources(deployed, "AWS::SQS::QueuePolicy").values()
        if body["Properties"]["Queues"] == [{"Ref": "FailureQueue"}]
    ]
    (policy,) = policies
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == FAILURE_QUEUE_ARN
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["JobsFunctionUpload", "Arn"]}}}


def test_failed_invocations_go_to_failure_queue(deployed: dict[str, Any]) -> None:
    (config,) = _resources(deployed, "AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["FunctionName"] == {"Ref": "JobsFunction"}
    assert config["Properties"]["DestinationConfig"] == {"OnFailure": {"Destination": FAILURE_QUEUE_ARN}}
    # The jobs role can deliver there (Lambda sends with the function's role).
    statements = list(_statements(deployed["Resources"]["JobsFunctionRole"]))
    assert {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": FAILURE_QUEUE_ARN} in statements


# --- Roles: least privilege, as created --------------------------------------------------------


def _statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]


def _object_arn(resource: Any) -> tuple[str, str]:
    """(bucket logical id, key prefix) of a `!Sub "${Bucket.Arn}/prefix*"` object ARN."""
    text = resource["Fn::Sub"] if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str) else ""
    bucket, separator, pattern = text.partition(".Arn}/")
    assert bucket.startswith("${") and separator, f"not an object ARN of one of our buckets: {resource}"
    prefix = pattern.removesuffix("*")
    assert pattern.endswith("*") and prefix and "*" not in prefix and "?" not in prefix, f"not one prefix: {text}"
    return bucket.removeprefix("${"), prefix


def test_roles_are_for_lambda_with_only_the_basic_managed_policies(deployed: dict[str, Any]) -> None:
    roles = _resources(deployed, "AWS::IAM::Role")
    assert set(roles) == {"ApiFunctionRole", "JobsFunctionRole"}
    for name, role in roles.items():
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": ["lambda.amazonaws.com"]}, name
        assert set(role["Properties"]["ManagedPolicyArns"]) <= MANAGED_POLICIES, name


def test_every_statement_is_scoped_to_a_bucket_prefix_the_failure_queue_or_usage_plans(
    deployed: dict[str, Any],
) -> None:
    for name, role in _resources(deployed, "AWS::IAM::Role").items():
        for statement in _statements(role):
            assert statement["Effect"] == "Allow", name
            assert "NotAction" not in statement and "NotResource" not in statement, name
            actions = set(_as_list(statement["Action"]))
            resources = _as_list(statement["Resource"])
            if actions <= OBJECT_ACTIONS:
                for resource in resources:
                    bucket, prefix = _object_arn(resource)
                    assert bucket in BUCKETS, f"{name}: {resource}"
                    if "s3:PutObject" in actions:
                        # Writes into the output bucket's fixed prefixes; where uploads trigger, only
                        # the API's signed forms (each pinned to one key by its policy).
                        signs_forms = name == "ApiFunctionRole" and (bucket, prefix) == UPLOAD_FORMS
                        assert signs_forms or (bucket == "OutputBucket" and prefix in WRITABLE_PREFIXES), (
                            f"{name} writes to {resource}"
                        )
            elif actions == {"s3:ListBucket"}:
                # Bucket-level: the bucket ARN itself, narrowed to non-empty prefixes by a condition.
                assert all(resource["Fn::GetAtt"][0] in BUCKETS for resource in resources), name
                assert set(statement["Condition"]) == {"StringLike"}, name
                assert all(_as_list(statement["Condition"]["StringLike"]["s3:prefix"])), name
            elif actions == {"sqs:SendMessage"}:
                assert resources == [FAILURE_QUEUE_ARN], f"{name}: {resources}"
            elif actions == {"apigateway:GET"}:
                # remove.bg's key figures (test_the_function_may_read_usage_plans_only_with_remove_bg_keys)
                assert name == "ApiFunctionRole"
                assert all(resource["Fn::Sub"].split("::")[-1].startswith("/usageplans") for resource in resources)
            else:
                pytest.fail(f"{name}: unexpected actions {sorted(actions)}")


def test_api_reads_sources_under_the_input_prefix_and_writes_only_api_results(deployed: dict[str, Any]) -> None:
    grants = {
        (action, json.dumps(resource, sort_keys=True))
        for statement in _statements(deployed["Resources"]["ApiFunctionRole"])
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
        if action in OBJECT_ACTIONS
    }
    sub = lambda text: json.dumps({"Fn::Sub": text})  # noqa: E731
    assert grants == {
        ("s3:GetObject", sub("${InputBucket.Arn}/${InputPrefix}*")),
        ("s3:PutObject", sub("${OutputBucket.Arn}/api/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/api/*")),
        # The upload flow: signing the form, its record, and links to its outputs.
        ("s3:PutObject", sub("${InputBucket.Arn}/${InputPrefix}uploads/*")),
        ("s3:PutObject", sub("${OutputBucket.Arn}/results/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/results/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/cutouts/uploads/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/masks/uploads/*")),
    }


def test_jobs_write_upload_records_and_outputs_only_in_the_output_bucket(deployed: dict[str, Any]) -> None:
    writes = {
        json.dumps(resource, sort_keys=True)
        for statement in _statements(deployed["Resources"]["JobsFunctionRole"])
        if "s3:PutObject" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }
    assert writes == {
        json.dumps({"Fn::Sub": f"${{OutputBucket.Arn}}/{prefix}*"}) for prefix in ("cutouts/", "masks/", "results/")
    }


def test_browsers_may_post_uploads_and_read_results_and_nothing_else(deployed: dict[str, Any]) -> None:
    buckets = deployed["Resources"]
    (upload_rule,) = buckets["InputBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    (result_rule,) = buckets["OutputBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert upload_rule["AllowedMethods"] == ["POST"]
    assert result_rule["AllowedMethods"] == ["GET"]
    for rule in (upload_rule, result_rule):
        assert rule["AllowedOrigins"] == {"Ref": "UploadCorsOrigins"}


# --- Events: only uploads to the input bucket, and no loop ------------------------------------


def test_only_input_bucket_uploads_under_the_prefix_trigger_anything(deployed: dict[str, Any]) -> None:
    pattern = deployed["Resources"]["JobsFunctionUpload"]["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "InputBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": {"Ref": "InputPrefix"}}]
    assert not _resources(deployed, "AWS::Lambda::EventSourceMapping")
    assert "NotificationConfiguration" not in deployed["Resources"]["OutputBucket"]["Properties"]
    for name, function in _resources(deployed, "AWS::Lambda::Function").items():
        # Lambda's own loop detection stays on.
        assert function["Properties"]["RecursiveLoop"] == "Terminate", name
