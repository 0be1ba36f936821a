"""template.yaml as CloudFormation deploys it: SAM's transform run for every value the parameters
allow, cfn-lint on what it produces, and the security and wiring asserted on the produced resources.

Every combination of the choices that change what is created (ApiAuth, RemoveBgApiKeys,
Architecture); every other allowed value once (LogRetentionDays' 22), the rest at their defaults;
and the optional features (`source` reads, alarm notifications, browser uploads) all turned on.
One translator run transforms them all and one cfn-lint run lints them all.

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
    transform_all,
)

_PARAMETERS = load_template()["Parameters"]
_CHOICES = {
    name: [str(value) for value in spec["AllowedValues"]]
    for name, spec in _PARAMETERS.items()
    if "AllowedValues" in spec
}
# Choices that decide which resources and properties exist: every combination of their values.
STRUCTURAL = ("ApiAuth", "RemoveBgApiKeys", "Architecture")
# Optional features, off by default, each turned on by a value of a free-form parameter.
FEATURES = {
    "ApiSourcePrefix": "sources/",
    "FailureAlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:upload-failures",
    "UploadCorsOrigins": "https://app.example.com,https://admin.example.com",
}
_DEFAULTS = {name: str(_PARAMETERS[name]["Default"]) for name in STRUCTURAL}
COMBINATIONS = [
    dict(zip(STRUCTURAL, values, strict=True)) for values in itertools.product(*(_CHOICES[name] for name in STRUCTURAL))
]
COMBINATIONS += [
    {**_DEFAULTS, name: value}
    for name, values in _CHOICES.items()
    if name not in STRUCTURAL
    for value in values
    if value != str(_PARAMETERS[name]["Default"])
]
COMBINATIONS += [{**_DEFAULTS, **FEATURES}, {**_DEFAULTS, "ApiAuth": "NONE", "RemoveBgApiKeys": "ENABLED", **FEATURES}]
_IDS = [
    ",".join(
        f"{name}={value}" for name, value in combination.items() if value != _DEFAULTS.get(name) or name == "ApiAuth"
    )
    for combination in COMBINATIONS
]

BUCKETS = {"InputBucket", "OutputBucket"}
# Where each function may write in the output bucket: fixed prefixes.
WRITABLE_PREFIXES = {"api/", "cutouts/", "masks/", "results/"}
# The one place in the input bucket a role may write: the API's, for the forms POST /uploads signs.
UPLOAD_FORMS = ("InputBucket", "${InputPrefix}api-uploads/")
OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject"}
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
FAILURE_QUEUE_ARN = {"Fn::GetAtt": ["FailureQueue", "Arn"]}
UPLOAD_QUEUE_ARN = {"Fn::GetAtt": ["UploadQueue", "Arn"]}
UPLOAD_RULE_ARN = {"Fn::GetAtt": ["UploadRule", "Arn"]}
# What Lambda's event source mapping needs of the jobs role, on the upload queue only.
QUEUE_POLLING = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
IAM_SECURITY: list[dict[str, list[str]]] = [{"AWS_IAM": []}]


@pytest.fixture(scope="module")
def transforms() -> dict[str, dict[str, Any] | TransformRejected]:
    """Every combination's transform output, by combination, from one run of the translator."""
    return {
        json.dumps(combination, sort_keys=True): outcome
        for combination, outcome in zip(COMBINATIONS, transform_all(COMBINATIONS), strict=True)
    }


@pytest.fixture(scope="module")
def transformed(
    transforms: dict[str, dict[str, Any] | TransformRejected],
) -> Callable[[dict[str, str]], dict[str, Any]]:
    """The raw transform output of a combination; a rejection fails the test using it."""

    def get(combination: dict[str, str]) -> dict[str, Any]:
        key = json.dumps(combination, sort_keys=True)
        if key not in transforms:  # a test's own parameter values
            (transforms[key],) = transform_all([combination])
        outcome = transforms[key]
        if isinstance(outcome, TransformRejected):
            pytest.fail(f"the SAM transform rejects template.yaml for {combination}: {outcome}")
        return outcome

    return get


@pytest.fixture(scope="module")
def lint_findings(
    transforms: dict[str, dict[str, Any] | TransformRejected],
    tool: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """cfn-lint's findings on each transformed template (by combination), from one run over them all."""
    folder = tmp_path_factory.mktemp("transformed")
    paths = {}
    for number, (key, outcome) in enumerate(transforms.items()):
        if isinstance(outcome, dict):
            paths[key] = folder / f"combination-{number}.json"
            paths[key].write_text(json.dumps(outcome, indent=1))
    result = subprocess.run(
        [str(tool("cfn-lint")), "--format", "parseable", "--", *map(str, paths.values())],
        cwd=ROOT,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode % 2 == 0, result.stderr  # odd: cfn-lint itself failed; else a bit per finding level
    lines = result.stdout.splitlines()
    return {key: "\n".join(line for line in lines if line.startswith(f"{path}:")) for key, path in paths.items()}


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


def test_every_allowed_value_is_transformed() -> None:
    # The combinations come from the template: every value of every choice is in one of them, and
    # the structural choices in every combination with each other.
    assert set(STRUCTURAL) <= set(_CHOICES)
    for name, values in _CHOICES.items():
        assert {combination[name] for combination in COMBINATIONS if name in combination} | {
            str(_PARAMETERS[name]["Default"])
        } == set(values), name
    structural = {tuple(combination[name] for name in STRUCTURAL) for combination in COMBINATIONS}
    assert len(structural) == len(list(itertools.product(*(_CHOICES[name] for name in STRUCTURAL)))) >= 8
    assert set(FEATURES) <= set(_PARAMETERS)
    assert all(_PARAMETERS[name]["Default"] == "" for name in FEATURES), "each feature is off by default"


def test_transform_accepts_the_template(
    transformed: Callable[[dict[str, str]], dict[str, Any]], combination: dict[str, str]
) -> None:
    output = transformed(combination)
    assert "Transform" not in output
    assert not [body["Type"] for body in output["Resources"].values() if body["Type"].startswith("AWS::Serverless::")]


def test_cfn_lint_passes_on_the_transformed_template(
    transformed: Callable[[dict[str, str]], dict[str, Any]],
    lint_findings: dict[str, str],
    combination: dict[str, str],
) -> None:
    transformed(combination)  # a rejected combination fails here, not as "no findings"
    assert lint_findings[json.dumps(combination, sort_keys=True)] == ""


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


def test_only_api_gateway_may_invoke_and_the_jobs_take_from_their_queue(
    deployed: dict[str, Any], combination: dict[str, str]
) -> None:
    permissions = _resources(deployed, "AWS::Lambda::Permission")
    principals = {name: body["Properties"]["Principal"] for name, body in permissions.items()}
    expected = {
        "ApiFunctionRemovePermission": "apigateway.amazonaws.com",
        "ApiFunctionMaskPermission": "apigateway.amazonaws.com",
        "ApiFunctionRemoveBgPermission": "apigateway.amazonaws.com",
        "ApiFunctionRemoveBgAccountPermission": "apigateway.amazonaws.com",
        "ApiFunctionUploadsPermission": "apigateway.amazonaws.com",
        "ApiFunctionResultsPermission": "apigateway.amazonaws.com",
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
    # No one invokes the jobs function but Lambda's own poller of the upload queue, with its role.
    (mapping,) = _resources(deployed, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"] == UPLOAD_QUEUE_ARN
    assert mapping["Properties"]["FunctionName"] == {"Ref": "JobsFunction"}


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


# --- Uploads: a queue that counts attempts, a failure queue that keeps what failed ----------------


def test_the_upload_rule_feeds_the_upload_queue_and_dead_letters_into_failure_queue(deployed: dict[str, Any]) -> None:
    rules = _resources(deployed, "AWS::Events::Rule")
    assert set(rules) == {"UploadRule"}
    (target,) = rules["UploadRule"]["Properties"]["Targets"]
    assert target["Arn"] == UPLOAD_QUEUE_ARN
    assert target["DeadLetterConfig"] == {"Arn": FAILURE_QUEUE_ARN}
    # Our queues (encrypted), not ones SAM made on the side.
    queues = _resources(deployed, "AWS::SQS::Queue")
    assert set(queues) == {"UploadQueue", "FailureQueue"}
    assert all(queue["Properties"]["SqsManagedSseEnabled"] is True for queue in queues.values())


def test_eventbridge_may_send_to_the_queues_for_the_upload_rule_only(deployed: dict[str, Any]) -> None:
    policies = {
        json.dumps(body["Properties"]["Queues"]): body["Properties"]["PolicyDocument"]
        for body in _resources(deployed, "AWS::SQS::QueuePolicy").values()
    }
    assert set(policies) == {json.dumps([{"Ref": "UploadQueue"}]), json.dumps([{"Ref": "FailureQueue"}])}
    for queues, document in policies.items():
        (statement,) = document["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == {"Fn::GetAtt": [json.loads(queues)[0]["Ref"], "Arn"]}
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": UPLOAD_RULE_ARN}}


def test_the_upload_queue_gives_an_upload_jobs_attempts_then_the_failure_queue(deployed: dict[str, Any]) -> None:
    resources = deployed["Resources"]
    queue = resources["UploadQueue"]["Properties"]
    jobs = resources["JobsFunction"]["Properties"]
    # The queue counts the attempts; the function knows which attempt is the last from the same parameter
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": FAILURE_QUEUE_ARN,
        "maxReceiveCount": {"Ref": "JobsAttempts"},
    }
    assert jobs["Environment"]["Variables"]["JOBS_MAX_ATTEMPTS"] == {"Ref": "JobsAttempts"}
    # A message being worked on is not handed out again, and the failure queue keeps it longer than the queue did
    assert queue["VisibilityTimeout"] > jobs["Timeout"]
    assert resources["FailureQueue"]["Properties"]["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    # One upload per invocation, failures reported per message, no throttled (attempt-wasting) deliveries
    (mapping,) = _resources(deployed, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["BatchSize"] == 1
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "JobsMaxConcurrency"}}
    # No asynchronous invocation path is left whose failures would land elsewhere
    assert not _resources(deployed, "AWS::Lambda::EventInvokeConfig")


def test_an_alarm_watches_the_failure_queue_and_notifies_when_asked(
    deployed: dict[str, Any], combination: dict[str, str]
) -> None:
    (alarm,) = _resources(deployed, "AWS::CloudWatch::Alarm").values()
    properties = alarm["Properties"]
    assert (properties["Namespace"], properties["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert properties["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["FailureQueue", "QueueName"]}}]
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanThreshold", 0)
    if combination.get("FailureAlarmTopicArn"):
        assert properties["AlarmActions"] == properties["OKActions"] == [{"Ref": "FailureAlarmTopicArn"}]
    else:
        assert "AlarmActions" not in properties and "OKActions" not in properties


def test_every_function_logs_to_a_group_with_the_retention_parameter(deployed: dict[str, Any]) -> None:
    groups = _resources(deployed, "AWS::Logs::LogGroup")
    used = []
    for name, function in _resources(deployed, "AWS::Lambda::Function").items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        used.append(group)
    assert sorted(used) == sorted(groups)


# --- Buckets: what expires, and who may upload from a browser ------------------------------------

# The upload flow's and the API's own prefixes: nothing else is ever deleted by a lifecycle rule.
RESERVED_PREFIXES = {
    "InputBucket": [{"Fn::Sub": "${InputPrefix}api-uploads/"}],
    "OutputBucket": ["api/", "results/", "cutouts/api-uploads/", "masks/api-uploads/"],
}


def test_objects_expire_only_under_reserved_prefixes_and_abandoned_uploads_are_aborted(
    deployed: dict[str, Any],
) -> None:
    for bucket, reserved in RESERVED_PREFIXES.items():
        rules = deployed["Resources"][bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
        expiring = [rule for rule in rules if "ExpirationInDays" in rule or "Expiration" in rule]
        assert [rule["Prefix"] for rule in expiring] == reserved, bucket
        assert all(rule["ExpirationInDays"] == {"Ref": "ApiResultExpiryDays"} for rule in expiring)
        (aborting,) = [rule for rule in rules if "AbortIncompleteMultipartUpload" in rule]
        assert set(aborting) == {"Id", "Status", "AbortIncompleteMultipartUpload"}, "whole bucket, and nothing else"
        assert 1 <= aborting["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 7
        assert all(rule["Status"] == "Enabled" for rule in rules)


def test_links_and_forms_are_signed_to_die_with_what_they_lead_to(deployed: dict[str, Any]) -> None:
    variables = deployed["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["RESULT_EXPIRY_DAYS"] == {"Ref": "ApiResultExpiryDays"}
    assert variables["PRESIGNED_URL_EXPIRY"] == {"Ref": "PresignedUrlExpiry"}


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


def test_every_statement_is_scoped_to_a_bucket_prefix_the_upload_queue_or_usage_plans(
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
            elif actions <= QUEUE_POLLING:
                assert name == "JobsFunctionRole" and resources == [UPLOAD_QUEUE_ARN], f"{name}: {resources}"
            elif actions == {"apigateway:GET"}:
                # remove.bg's key figures (test_the_function_may_read_usage_plans_only_with_remove_bg_keys)
                assert name == "ApiFunctionRole"
                assert all(resource["Fn::Sub"].split("::")[-1].startswith("/usageplans") for resource in resources)
            else:
                pytest.fail(f"{name}: unexpected actions {sorted(actions)}")


def test_api_reads_no_upload_only_its_source_folder_when_asked_and_writes_only_api_results(
    deployed: dict[str, Any], combination: dict[str, str]
) -> None:
    grants = {
        (action, json.dumps(resource, sort_keys=True))
        for statement in _statements(deployed["Resources"]["ApiFunctionRole"])
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
        if action in OBJECT_ACTIONS
    }
    sub = lambda text: json.dumps({"Fn::Sub": text})  # noqa: E731
    # `source` reads: off unless a folder is named, and then that folder alone (never the input prefix)
    sources = (
        {("s3:GetObject", sub("${InputBucket.Arn}/${ApiSourcePrefix}*"))}
        if combination.get("ApiSourcePrefix")
        else set()
    )
    assert {grant for grant in grants if "${InputBucket.Arn}" in grant[1] and grant[0] == "s3:GetObject"} == sources
    assert grants == sources | {
        ("s3:PutObject", sub("${OutputBucket.Arn}/api/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/api/*")),
        # The upload flow: signing the form, its record, and links to its outputs.
        ("s3:PutObject", sub("${InputBucket.Arn}/${InputPrefix}api-uploads/*")),
        ("s3:PutObject", sub("${OutputBucket.Arn}/results/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/results/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/cutouts/api-uploads/*")),
        ("s3:GetObject", sub("${OutputBucket.Arn}/masks/api-uploads/*")),
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


def test_browsers_may_post_uploads_and_read_results_from_named_origins_only(
    deployed: dict[str, Any], combination: dict[str, str]
) -> None:
    buckets = deployed["Resources"]
    if not combination.get("UploadCorsOrigins"):
        # No origin named (the default): no CORS at all, so no page may upload or read
        assert not [name for name in BUCKETS if "CorsConfiguration" in buckets[name]["Properties"]]
        return
    (upload_rule,) = buckets["InputBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    (result_rule,) = buckets["OutputBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert upload_rule["AllowedMethods"] == ["POST"]
    assert result_rule["AllowedMethods"] == ["GET"]
    for rule in (upload_rule, result_rule):
        assert rule["AllowedOrigins"] == {"Ref": "UploadCorsOrigins"}


# --- Events: only uploads to the input bucket, and no loop ------------------------------------


def test_only_input_bucket_uploads_under_the_prefix_trigger_anything(deployed: dict[str, Any]) -> None:
    pattern = deployed["Resources"]["UploadRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "InputBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": {"Ref": "InputPrefix"}}]
    # The one event source: the queue that rule feeds
    (mapping,) = _resources(deployed, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"] == UPLOAD_QUEUE_ARN
    assert "NotificationConfiguration" not in deployed["Resources"]["OutputBucket"]["Properties"]
    for name, function in _resources(deployed, "AWS::Lambda::Function").items():
        # Lambda's own loop detection stays on.
        assert function["Properties"]["RecursiveLoop"] == "Terminate", name
