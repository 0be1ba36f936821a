"""remove.bg's credits and limits: `GET /v1.0/account`, `X-Credits-Charged`, `X-RateLimit-*`, and the
local server's own refusals on remove.bg's routes.

Behind the REST API with API keys a key's credits are what is left of its daily usage-plan quota,
read from API Gateway's GetUsage: here boto3 talks over HTTP to a stand-in for API Gateway's
management API on 127.0.0.1 (moto has no GetUsage), as it talks to moto's S3 in the other tests.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from handler.aws.removebg_api import UNLIMITED_CREDITS
from handler.local.server import LocalServer
from tests.helpers.api import EVENT_IMAGE, Reply, Service, http_event, load_event, multipart_event
from tests.helpers.image_host import serving

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

PLAN, KEY_ID, QUOTA = "plan-abc", "abcdef1234", 1000  # KEY_ID: events/api_v1_*.json's apiKeyId


@dataclass
class UsageApi:
    """API Gateway's GetUsagePlans and GetUsage, as its REST API answers them on the wire."""

    url: str = ""
    period: str | None = "DAY"  # the key's plan's quota period; None: a plan without a quota
    used: list[int] | None = field(default_factory=lambda: [0])  # per day; None: no usage yet
    fail: bool = False
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    def answer(self, path: str) -> dict[str, Any]:
        if path == "/usageplans":
            quota = {"quota": {"limit": QUOTA, "offset": 0, "period": self.period}} if self.period else {}
            return {"item": [{"id": PLAN, "name": "Per-key limits", **quota}]}
        assert path == f"/usageplans/{PLAN}/usage", path
        values = {} if self.used is None else {KEY_ID: [[used, QUOTA - used] for used in self.used]}
        return {"usagePlanId": PLAN, "values": values}


@pytest.fixture
def usage_api() -> Iterator[UsageApi]:
    state = UsageApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            state.requests.append((url.path, parse_qs(url.query)))
            if state.fail:
                body, status = b'{"message":"Too Many Requests"}', 429
            else:
                body, status = json.dumps(state.answer(url.path)).encode(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    with serving(Handler) as host:
        state.url = f"http://{host}"
        yield state


@pytest.fixture
def keyed(configure: Callable[..., Service], usage_api: UsageApi) -> Service:
    """Deployed with RemoveBgApiKeys=ENABLED, API Gateway's management API on 127.0.0.1."""
    return configure(REMOVEBG_API_KEYS="ENABLED", AWS_ENDPOINT_URL_API_GATEWAY=usage_api.url)


def _next_midnight() -> int:
    now = int(time.time())
    return now - now % 86400 + 86400


def _attributes(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body[:300]
    attributes: dict[str, Any] = reply.json["data"]["attributes"]
    return attributes


def test_account_without_keys_is_unlimited(service: Service) -> None:
    reply = service.invoke(http_event(b"", content_type=None, path="/v1.0/account", method="GET"))

    attributes = _attributes(reply)
    # THEN remove.bg's shape, with the documented "unlimited": nothing is metered without keys
    assert attributes["credits"] == {
        "total": UNLIMITED_CREDITS,
        "subscription": UNLIMITED_CREDITS,
        "payg": 0,
        "enterprise": 0,
    }
    assert attributes["api"] == {"free_calls": UNLIMITED_CREDITS, "sizes": "all"}
    assert not any(name.startswith("x-ratelimit") for name in reply.headers)


@pytest.mark.parametrize(("used", "left"), [([37], QUOTA - 37), (None, QUOTA)])
def test_account_with_a_key_is_what_its_quota_has_left_today(
    keyed: Service, usage_api: UsageApi, used: list[int] | None, left: int
) -> None:
    usage_api.used = used

    reply = keyed.invoke(load_event("api_v1_account.json"))

    attributes = _attributes(reply)
    assert attributes["credits"]["total"] == left and attributes["api"]["free_calls"] == 0
    assert (reply.headers["x-ratelimit-limit"], reply.headers["x-ratelimit-remaining"]) == (str(QUOTA), str(left))
    assert int(reply.headers["x-ratelimit-reset"]) == _next_midnight()
    # ... asked of API Gateway: the key's plan, then its usage in that plan today (UTC)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert usage_api.requests == [
        ("/usageplans", {"keyId": [KEY_ID]}),
        (f"/usageplans/{PLAN}/usage", {"keyId": [KEY_ID], "startDate": [today], "endDate": [today]}),
    ]


def test_a_monthly_quota_counts_the_month_so_far(keyed: Service, usage_api: UsageApi) -> None:
    usage_api.period, usage_api.used = "MONTH", [5, 7, 11]

    reply = keyed.invoke(load_event("api_v1_account.json"))

    assert _attributes(reply)["credits"]["total"] == QUOTA - 23
    now = time.gmtime()
    assert usage_api.requests[-1][1]["startDate"] == [time.strftime("%Y-%m-01", now)]
    assert int(reply.headers["x-ratelimit-reset"]) > time.time()


def test_a_key_in_a_plan_without_a_quota_has_unlimited_credits(keyed: Service, usage_api: UsageApi) -> None:
    usage_api.period = None

    reply = keyed.invoke(load_event("api_v1_account.json"))

    assert _attributes(reply)["credits"]["total"] == UNLIMITED_CREDITS
    assert not any(name.startswith("x-ratelimit") for name in reply.headers)


def test_a_result_through_a_key_charges_one_and_tells_the_limit(keyed: Service, usage_api: UsageApi) -> None:
    usage_api.used = [999]

    first = keyed.invoke(load_event("api_v1_removebg.json"))
    second = keyed.invoke(load_event("api_v1_removebg.json"))

    for reply in (first, second):
        assert reply.status == 200, reply.body[:300]
        assert reply.headers["x-credits-charged"] == "1"
        assert reply.headers["x-ratelimit-limit"] == str(QUOTA) and reply.headers["x-ratelimit-remaining"] == "1"
    # The key's plan is looked up once per execution environment; its usage on every call
    assert [path for path, _ in usage_api.requests].count("/usageplans") == 1


def test_usage_figures_that_cannot_be_read_are_never_guessed(keyed: Service, usage_api: UsageApi) -> None:
    usage_api.fail = True

    account = keyed.invoke(load_event("api_v1_account.json"))
    result = keyed.invoke(load_event("api_v1_removebg.json"))

    # THEN the account says it does not know (a 503 to retry), and a result comes without the figures
    assert account.status == 503
    (error,) = account.json["errors"]
    assert error["code"] == "usage_unavailable"
    assert result.status == 200 and result.headers["x-credits-charged"] == "1"
    assert not any(name.startswith("x-ratelimit") for name in result.headers)


def test_a_key_without_keys_enabled_is_not_metered(service: Service) -> None:
    # GIVEN the REST event with a key, to a function deployed without RemoveBgApiKeys (sam local invoke)
    reply = service.invoke(load_event("api_v1_removebg.json"))

    assert reply.status == 200 and reply.headers["x-credits-charged"] == "0"


def test_the_account_route_takes_get_only(service: Service) -> None:
    reply = service.invoke(multipart_event({"image_file": EVENT_IMAGE}, path="/v1.0/account"))

    assert reply.status == 405 and reply.headers["allow"] == "GET"
    (error,) = reply.json["errors"]
    assert error["code"] == "method_not_allowed"


# --- The local server's own refusals, on remove.bg's routes -------------------------------------


def _raw(server: LocalServer, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Send only a request's head: the server refuses on its headers, before reading any body."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.putrequest(method, path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (
            {"Content-Length": str(11 * 1024 * 1024), "Content-Type": "multipart/form-data; boundary=x"},
            "file_too_large",
        ),
        ({"Transfer-Encoding": "chunked", "Content-Type": "multipart/form-data; boundary=x"}, "length_required"),
    ],
)
def test_the_local_servers_own_limits_are_remove_bgs_400_on_its_route(
    server: LocalServer, headers: dict[str, str], code: str
) -> None:
    status, document = _raw(server, "POST", "/v1.0/removebg", headers)

    assert status == 400
    (error,) = document["errors"]
    assert error["code"] == code and error["title"] and error["detail"]


def test_the_local_servers_own_limits_keep_the_projects_shape_elsewhere(server: LocalServer) -> None:
    status, document = _raw(server, "POST", "/remove", {"Content-Length": str(11 * 1024 * 1024)})

    assert status == 413 and document["error"]["code"] == "request_too_large"


def test_the_local_server_answers_the_account_call(server: LocalServer) -> None:
    status, document = _raw(server, "GET", "/v1.0/account", {"X-Api-Key": "any"})

    assert status == 200 and document["data"]["attributes"]["credits"]["total"] == UNLIMITED_CREDITS
