"""remove.bg's client libraries from npm and PyPI against the local server, their requests recorded.

Dev-only (X
dependencies, installed in .venv-removebg-clients). Each client is the published package, pinned,
with only its endpoint changed: the Python ones by setting their endpoint constant before the call,
the npm ones by rewriting the `https://api.remove.bg` literal in their installed file (they do not
export it). Each documented call (file, base64, URL, zip, alpha, errors, account) runs against
`python -m handler serve`'s server through a recording proxy on 127.0.0.1, which keeps the exact
requests (headers and bodies) the client sent. Every call must end as the client's documentation
says it does (a file written, a promise resolved, the documented exception); the script fails
otherwise. The recordings are written to tests/functional/removebg_clients/ (committed), where
tests/functional/test_removebg_clients.py replays them in `make test`.

Usage: python scripts/removebg_clients.py CLIENTS_DIR   (CLIENTS_DIR holds venv/ and node_modules/)
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "functional" / "removebg_clients"
# The photo every call sends: the example events' small cat (96x64), so the recordings stay small.
PHOTO = base64.b64decode(json.loads((ROOT / "events" / "api_v2_remove.json").read_text())["body"])
# What the clients send where remove.bg wants its key; the local server takes any.
API_KEY = "local-test-key"
REMOVE_BG = "https://api.remove.bg"
# The recorded image host's name in the fixtures; the replay puts its own in its place.
IMAGE_HOST_PLACEHOLDER = "image-host.invalid"
# Files of the npm packages that hold the endpoint literal, and how many times each holds it.
NPM_ENDPOINT_FILES = {"remove.bg/dist/index.js": 1, "removebg-wrapper/index.js": 2}
CALL_TIMEOUT_S = 120


@dataclass
class Exchange:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int = 0


class Recorder:
    """The proxy's log: the exchanges of the call running now."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()


def _proxy(upstream: str, recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                body = self._read_chunked()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            exchange = Exchange(self.command, self.path, list(self.headers.items()), body)
            with recorder.lock:
                recorder.exchanges.append(exchange)
            connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=CALL_TIMEOUT_S)
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in exchange.headers:
                    connection.putheader(name, value)
                connection.endheaders(body if "chunked" not in str(exchange.headers).lower() else None)
                if "chunked" in str(exchange.headers).lower():
                    # Sent on as it came (the server answers chunked bodies as API Gateway does).
                    connection.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
                response = connection.getresponse()
                payload = response.read()
                exchange.status = response.status
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            finally:
                connection.close()

        def _read_chunked(self) -> bytes:
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        do_GET = do_POST = _forward  # noqa: N815 (BaseHTTPRequestHandler's naming)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
            pass

    return Proxy


class _ImageHost(BaseHTTPRequestHandler):
    """The photo at /cat.jpg (HEAD too: one client checks the link first), 404 elsewhere."""

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, *, with_body: bool) -> None:
        found = self.path == "/cat.jpg"
        body = PHOTO if found else b"not found"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "image/jpeg" if found else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# --- The clients' documented calls -------------------------------------------------------------
# Each is a program for the client's own language, printing one JSON line: what the client returned.
# {base}: the base URL the endpoint is changed to; {image_url}: the photo's URL; files are in the cwd.

PYTHON_CALLS: dict[str, dict[str, str]] = {
    # removebg 0.04: writes <file>_no_bg.png or the given name; raise_for_status() on an error.
    "removebg": {
        "prelude": """
            import removebg.removebg
            removebg.removebg.API_ENDPOINT = "{base}/v1.0/removebg"
            from removebg import RemoveBg
            client = RemoveBg("{key}", "error.log")
        """,
        "file": 'client.remove_background_from_img_file("cat.jpg"); result = {{"file": "cat.jpg_no_bg.png"}}',
        "file_hd_bg_color": (
            'client.remove_background_from_img_file("cat.jpg", size="hd", bg_color="81d4fa");'
            ' result = {{"file": "cat.jpg_no_bg.png"}}'
        ),
        "base64": (
            "import base64; client.remove_background_from_base64_img("
            'base64.b64encode(open("cat.jpg", "rb").read()).decode()); result = {{"file": "no-bg.png"}}'
        ),
        "url": 'client.remove_background_from_img_url("{image_url}"); result = {{"file": "no-bg.png"}}',
        "error_not_an_image": """
            import requests
            try:
                client.remove_background_from_img_file("notes.jpg")
                result = {{"error": None}}
            except requests.HTTPError as error:
                result = {{"error": "HTTPError", "status": error.response.status_code}}
        """,
    },
    # remove-bg-api 0.2.1: GET /account on construction (its balance), X-Credits-Charged read as an
    # int from every result; errors as ApiErrorCode<status>.
    "remove-bg-api": {
        "prelude": """
            import remove_bg_api
            remove_bg_api.API_URL = "{base}/v1.0"
            client = remove_bg_api.RemoveBg("{key}")
        """,
        "account": (
            "result = {{'balance': client.account.balance(), 'free_calls': client.account.free_api_calls(),"
            " 'credits': client.account.get_balance_dict()}}"
        ),
        "file": 'data = client.remove_bg_file("cat.jpg"); result = {{"bytes": len(data), "png": data[:4].hex()}}',
        "file_zip": """
            data = client.remove_bg_file("cat.jpg", data={{"format": "zip", "size": "full"}})
            result = {{"bytes": len(data), "zip": data[:2] == b"PK"}}
        """,
        "file_alpha": """
            data = client.remove_bg_file("cat.jpg", data={{"channels": "alpha", "size": "auto"}})
            result = {{"bytes": len(data), "png": data[:4].hex()}}
        """,
        "base64": """
            import base64
            data = client.remove_bg_base64(base64.b64encode(open("cat.jpg", "rb").read()).decode())
            result = {{"bytes": len(data), "png": data[:4].hex()}}
        """,
        "url": 'data = client.remove_bg_url("{image_url}"); result = {{"bytes": len(data), "png": data[:4].hex()}}',
        "error_not_an_image": """
            try:
                client.remove_bg_file("notes.jpg")
                result = {{"error": None}}
            except Exception as error:
                result = {{"error": type(error).__name__}}
        """,
        "error_bad_option": """
            try:
                client.remove_bg_file("cat.jpg", data={{"size": "huge"}})
                result = {{"error": None}}
            except Exception as error:
                result = {{"error": type(error).__name__}}
        """,
    },
    # rembgpy 1.0.1: sends every option at its no-op value (roi, scale, position, shadow, ...).
    "rembgpy": {
        "prelude": """
            import rembgpy.bg
            rembgpy.bg.base_url = "{base}/v1.0/removebg"
            from rembgpy import RemBg
            client = RemBg("{key}", "error.log")
        """,
        "base64": """
            import base64
            client.remove_b64(base64.b64encode(open("cat.jpg", "rb").read()).decode(), nfn="b64.png")
            result = {{"file": "b64.png"}}
        """,
        "url": 'client.remove_img("{image_url}", nfn="url.png"); result = {{"file": "url.png"}}',
        "url_crop_margin": (
            'client.remove_img("{image_url}", size="full", crop="10%", nfn="crop.png"); result = {{"file": "crop.png"}}'
        ),
    },
}

NODE_CALLS: dict[str, dict[str, str]] = {
    # remove.bg 1.3.0: asks for JSON (data.result_b64), reads X-Credits-Charged, X-Type, X-Width, ...
    "remove.bg": {
        "prelude": """
            const rbg = require("remove.bg");
            const done = (promise) => promise.then(
              (r) => console.log(JSON.stringify({{ok: true, bytes: Buffer.from(r.base64img, "base64").length,
                png: Buffer.from(r.base64img, "base64").subarray(0, 4).toString("hex"),
                creditsCharged: r.creditsCharged, detectedType: r.detectedType,
                resultWidth: r.resultWidth, resultHeight: r.resultHeight}})),
              (errors) => console.log(JSON.stringify({{ok: false, errors}})));
        """,
        "file": 'done(rbg.removeBackgroundFromImageFile({{path: "cat.jpg", apiKey: "{key}", size: "regular"}}));',
        "file_crop_bg_color": (
            'done(rbg.removeBackgroundFromImageFile({{path: "cat.jpg", apiKey: "{key}", size: "full",'
            ' crop: true, crop_margin: "10px", bg_color: "81d4fa", outputFile: "out.png"}}));'
        ),
        "file_alpha": (
            'done(rbg.removeBackgroundFromImageFile({{path: "cat.jpg", apiKey: "{key}", channels: "alpha"}}));'
        ),
        "base64": """
            done(rbg.removeBackgroundFromImageBase64({{
              base64img: require("fs").readFileSync("cat.jpg").toString("base64"), apiKey: "{key}", size: "auto"}}));
        """,
        "url": 'done(rbg.removeBackgroundFromImageUrl({{url: "{image_url}", apiKey: "{key}", type: "person"}}));',
        "error_not_an_image": 'done(rbg.removeBackgroundFromImageFile({{path: "notes.jpg", apiKey: "{key}"}}));',
        "error_unsupported_option": """
            done(rbg.removeBackgroundFromImageFile({{path: "cat.jpg", apiKey: "{key}", scale: "50%"}}));
        """,
    },
    # removebg-wrapper 1.0.3: multipart with size=auto, writes output.png / output-2.png, or logs "Error:".
    "removebg-wrapper": {
        "prelude": 'const wrapper = require("removebg-wrapper");',
        "file": 'wrapper.rbFromImageFile("cat.jpg", "{key}");',
        "url": 'wrapper.rbFromImageUrl("{image_url}", "{key}");',
    },
}
# What each call's outcome must be: the file written / the promise's value, or the documented error.
PYTHON_FILE_CALLS = {"removebg", "rembgpy"}


def _program(calls: dict[str, str], call: str, **values: str) -> str:
    prelude = textwrap.dedent(calls["prelude"]).strip()
    body = textwrap.dedent(calls[call]).strip()
    return f"{prelude}\n{body}".format(**values)


def _client_env() -> dict[str, str]:
    """The clients' environment: where node and the shell's tools are, and no proxy for 127.0.0.1."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*", "no_proxy": "*"}


def _run_python(venv: Path, client: str, call: str, workdir: Path, base: str, image_url: str) -> dict[str, Any]:
    program = _program(PYTHON_CALLS[client], call, base=base, key=API_KEY, image_url=image_url)
    program += "\nimport json; print(json.dumps(result))"
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", program],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        env=_client_env(),
    )
    if completed.returncode != 0:
        return {"crashed": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "no output"}
    outcome: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if "file" in outcome:
        path = workdir / outcome["file"]
        outcome["written"] = path.read_bytes()[:4].hex() if path.exists() else None
    return outcome


def _run_node(modules: Path, client: str, call: str, workdir: Path, base: str, image_url: str) -> dict[str, Any]:
    program = _program(NODE_CALLS[client], call, key=API_KEY, image_url=image_url)
    completed = subprocess.run(
        ["node", "-e", program],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        env={**_client_env(), "NODE_PATH": str(modules)},
    )
    lines = completed.stdout.strip().splitlines()
    if client == "removebg-wrapper":
        written = {
            name: (workdir / name).read_bytes()[:4].hex()
            for name in ("output.png", "output-2.png")
            if (workdir / name).exists()
        }
        return {"written": written, "logged": completed.stderr.strip()[:300]}
    if completed.returncode != 0 or not lines:
        return {"crashed": (completed.stderr.strip().splitlines() or ["no output"])[-1]}
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


def _point_npm_clients_at(modules: Path, base: str) -> None:
    """The npm clients' endpoint literal, changed to `base`: the one change made to them."""
    for relative, count in NPM_ENDPOINT_FILES.items():
        path = modules / relative
        original = path.with_name(path.name + ".orig")
        if not original.exists():
            original.write_bytes(path.read_bytes())
        text = original.read_text()
        if text.count(REMOVE_BG) != count:
            raise SystemExit(f"{relative}: expected {count} x {REMOVE_BG}, found {text.count(REMOVE_BG)}")
        path.write_text(text.replace(REMOVE_BG, base))


# PNG's and JPEG's first bytes, as the outcomes show them.
PNG, JPEG = "89504e47", "ffd8ff"


def _expected(client: str, call: str, outcome: dict[str, Any]) -> str | None:
    """None when the client ended as its documentation says; otherwise what went wrong."""
    if "crashed" in outcome:
        return f"crashed: {outcome['crashed']}"
    if call.startswith("error"):
        if client == "remove.bg":
            errors = outcome.get("errors")
            ok = outcome.get("ok") is False and isinstance(errors, list) and bool(errors[0].get("code"))
            return None if ok else f"expected a rejection with remove.bg's errors, got {outcome}"
        wanted = {"removebg": {"error": "HTTPError", "status": 400}, "remove-bg-api": {"error": "ApiErrorCode400"}}
        return None if outcome == wanted[client] else f"expected {wanted[client]}, got {outcome}"
    # With a background colour, format=auto is JPG (no transparent regions); otherwise PNG.
    magic = JPEG if "bg_color" in call else PNG
    if client == "removebg-wrapper":
        name = "output.png" if call == "file" else "output-2.png"
        return None if outcome["written"].get(name, "").startswith(magic) else f"no image written: {outcome}"
    if client == "remove.bg":
        fields = ("creditsCharged", "detectedType", "resultWidth", "resultHeight")
        if outcome.get("ok") is not True or not str(outcome.get("png")).startswith(magic):
            return f"expected an image in data.result_b64, got {outcome}"
        missing = [field for field in fields if outcome.get(field) is None]
        return f"missing {', '.join(missing)}: {outcome}" if missing else None
    if client == "remove-bg-api":
        if call == "account":
            return None if isinstance(outcome.get("balance"), (int, float)) else f"no balance: {outcome}"
        if call == "file_zip":
            return None if outcome.get("zip") else f"expected a ZIP, got {outcome}"
        return None if outcome.get("png") == PNG else f"expected a PNG, got {outcome}"
    return None if str(outcome.get("written")).startswith(magic) else f"expected an image file, got {outcome}"


def _fixture(client: str, call: str, exchanges: list[Exchange], image_host: str) -> dict[str, Any]:
    def placeholder(data: bytes) -> bytes:
        return data.replace(image_host.encode(), IMAGE_HOST_PLACEHOLDER.encode()).replace(
            image_host.replace(":", "%3A").encode(), IMAGE_HOST_PLACEHOLDER.encode()
        )

    return {
        "client": client,
        "call": call,
        "requests": [
            {
                "method": exchange.method,
                "target": exchange.target,
                # As sent, but Host (the replay's server has its own address).
                "headers": [[name, value] for name, value in exchange.headers if name.lower() != "host"],
                "body_base64": base64.b64encode(placeholder(exchange.body)).decode(),
                "status": exchange.status,
            }
            for exchange in exchanges
        ],
    }


def main(clients_dir: Path) -> int:
    from handler.aws import image_url
    from handler.local.server import LocalServer
    from scripts.fetch_u2netp import ensure_u2netp
    from tests.helpers.image_host import serving

    clients_dir = clients_dir.resolve()  # the clients run in a directory of their own
    venv, modules = clients_dir / "venv", clients_dir / "node_modules"
    recorder = Recorder()
    # The clients fetch from 127.0.0.1, which the deployed check refuses: loopback only, as the tests do.
    image_url.address_allowed = lambda address: address.is_loopback
    failures: list[str] = []
    with serving(_ImageHost) as image_host:
        env = {
            "MODEL_PATH": str(ensure_u2netp()),
            "MODEL_OUTPUT": "probabilities",
            "IMAGE_URL_HOSTS": image_host,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        with LocalServer(port=0, env=env) as server, serving(_proxy(server.url, recorder)) as proxy:
            base = f"http://{proxy}"
            _point_npm_clients_at(modules, base)
            FIXTURES.mkdir(parents=True, exist_ok=True)
            runs = [
                (client, call, "python")
                for client, calls in PYTHON_CALLS.items()
                for call in calls
                if call != "prelude"
            ]
            runs += [
                (client, call, "node") for client, calls in NODE_CALLS.items() for call in calls if call != "prelude"
            ]
            for client, call, language in runs:
                with tempfile.TemporaryDirectory() as work:
                    workdir = Path(work)
                    (workdir / "cat.jpg").write_bytes(PHOTO)
                    (workdir / "notes.jpg").write_bytes(b"meeting notes, not a photo\n")
                    recorder.exchanges = []
                    url = f"http://{image_host}/cat.jpg"
                    run = _run_python if language == "python" else _run_node
                    outcome = run(venv if language == "python" else modules, client, call, workdir, base, url)
                problem = _expected(client, call, outcome)
                statuses = [exchange.status for exchange in recorder.exchanges]
                print(f"{'ok  ' if problem is None else 'FAIL'} {client:18} {call:26} {statuses} {problem or ''}")
                if problem is not None:
                    failures.append(f"{client} {call}: {problem}")
                fixture = _fixture(client, call, recorder.exchanges, image_host)
                (FIXTURES / f"{client}--{call}.json").write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{len(runs) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(Path(sys.argv[1])))
