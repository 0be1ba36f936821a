"""A tiny local stand-in for the Hugging Face Hub, for offline tests of model downloads.

`huggingface_hub.hf_hub_download` (2.4.0) talks to it over plain HTTP on 127.0.0.1. For one file
the library sends exactly:

1. ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`` (revision URL-quoted with
   ``safe=""``, filename quoted keeping ``/``). It needs ``X-Repo-Commit`` (else
   `FileMetadataError`), an ``ETag`` or ``X-Linked-Etag`` (the blob's name in the cache) and a size
   from ``X-Linked-Size`` or ``Content-Length``. Redirects to the same origin would be followed;
   we answer 200 directly because there is no separate CDN to imitate.
2. ``GET`` on the same URL (no redirect was seen), streamed in 10 MiB chunks. The only check on
   the body is its *length* against the HEAD size: the sha256 in the ETag becomes the blob's file
   name but is never verified. A connection dropped mid-body is retried up to 5 times (1 s sleep
   each, counter reset whenever a chunk arrives); once at least one whole chunk was written the
   retry sends ``Range: bytes=N-``, so Range is answered with 206 + Content-Range. (The GET asks
   for gzip; we never compress, as the Hub does not for LFS files.)

No ``/api/...`` call is made for a plain (non-Xet) file, so none is served; unknown paths get the
Hub's own 404/401 + ``X-Error-Code`` answers so the library raises its usual typed errors.

One other request exists: the first call per process builds a User-Agent that, unless telemetry
is off, fetches ``{constants.ENDPOINT}/api/agent-harnesses`` (3 s timeout, errors swallowed). With
``endpoint=`` that is the *real* huggingface.co; with ``HF_ENDPOINT`` it is this fake (404 here, so
nothing is cached under HF_HOME) and shows up in `requests`. Turn it off in tests:
``monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)`` in-process,
or ``HF_HUB_DISABLE_TELEMETRY=1`` in a subprocess environment.

Pointing the library at the fake (``constants.ENDPOINT`` and the URL template are frozen at
import time from ``HF_ENDPOINT``, so setting the variable later has no effect):

* in-process, preferred: ``hf_hub_download(repo, file, cache_dir=..., endpoint=hub.endpoint)``;
  the library swaps its default endpoint prefix for the one given;
* or in a subprocess whose environment has ``HF_ENDPOINT=hub.endpoint`` before it imports
  ``huggingface_hub``.

Offline mode is frozen the same way (``constants.HF_HUB_OFFLINE``): in-process use
``local_files_only=True`` or ``monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

# `{repo_id}/resolve/{revision}/{filename}`; repo ids contain one "/" (two with a "datasets/" prefix),
# so the non-greedy repo group stops at the first "/resolve/".
_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")


@dataclass
class _Revision:
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)


class FakeHub:
    """Serve registered files the way the Hub's ``/resolve`` endpoint does, with fault switches.

    Fault switches may be flipped while the server runs; each request reads them when it arrives.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        # Absolute byte offset at which every GET body stops (the connection is then closed), so a
        # resumed Range request gets nothing more either: a persistent, not a transient, fault.
        self.truncate_to: int | None = None
        # Serve bytes of the right length but the wrong content (each byte inverted).
        self.corrupt: bool = False
        # Answer every request with this status and an empty body.
        self.fail_status: int | None = None
        self._repos: dict[str, dict[str, _Revision]] = {}
        # The handler runs in server threads while the test thread adds files and reads `requests`.
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        # Port 0: the OS picks a free port, so parallel test runs never collide.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # keep-alive client connections must not block close()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- content ---------------------------------------------------------------------------

    @staticmethod
    def default_commit(repo_id: str, revision: str) -> str:
        """Deterministic 40-hex commit, so tests can predict the snapshot directory name."""
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    @staticmethod
    def sha256(content: bytes) -> str:
        """The ETag served for `content`: also the blob's file name in the HF cache."""
        return hashlib.sha256(content).hexdigest()

    def add_file(
        self, repo_id: str, filename: str, content: bytes, revision: str = "main", commit: str | None = None
    ) -> str:
        """Register a file and return the commit it is served at.

        A commit belongs to a revision: passing a new `commit` for an existing revision moves the
        whole revision there (like a push), the way the Hub would report it for every file.
        """
        with self._lock:
            revisions = self._repos.setdefault(repo_id, {})
            rev = revisions.get(revision)
            if rev is None:
                rev = revisions[revision] = _Revision(commit or self.default_commit(repo_id, revision))
            elif commit is not None:
                rev.commit = commit
            rev.files[filename] = content
            return rev.commit

    def _lookup(self, repo_id: str, revision: str) -> tuple[bool, _Revision | None]:
        """(repo exists, revision by name or by commit sha, or None)."""
        with self._lock:
            revisions = self._repos.get(repo_id)
            if revisions is None:
                return False, None
            if revision in revisions:
                return True, revisions[revision]
            # The library also resolves by commit sha (revision=<sha>), so accept that too.
            return True, next((r for r in revisions.values() if r.commit == revision), None)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    # HTTP/1.1 so the library's pooled client keeps connections alive, as with the real Hub, and
    # so a short body under a declared Content-Length reads as an incomplete message.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean; `FakeHub.requests` is the log

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, with_body: bool) -> None:
        fake = self.fake
        fake._record(self.command, self.path)
        if fake.fail_status is not None:
            self._empty(fake.fail_status)
            return

        match = _RESOLVE.match(urlsplit(self.path).path)
        if match is None:
            self._empty(404, {"X-Error-Code": "EntryNotFound"})
            return
        repo_id = match["repo"]
        revision, filename = unquote(match["revision"]), unquote(match["filename"])
        repo_exists, rev = fake._lookup(repo_id, revision)
        # Same codes the Hub uses, so the library raises RepositoryNotFoundError /
        # RevisionNotFoundError / RemoteEntryNotFoundError instead of a bare HTTP error.
        if not repo_exists:
            self._empty(401, {"X-Error-Code": "RepoNotFound"})
            return
        if rev is None:
            self._empty(404, {"X-Error-Code": "RevisionNotFound"})
            return
        content = rev.files.get(filename)
        if content is None:
            # X-Repo-Commit lets the library cache the file's absence under `.no_exist/`.
            self._empty(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": rev.commit})
            return

        etag = f'"{fake.sha256(content)}"'
        total = len(content)
        # LFS-style headers: sha256 ETag (blob name) and the linked size the library checks against.
        meta = {
            "X-Repo-Commit": rev.commit,
            "ETag": etag,
            "X-Linked-Etag": etag,
            "X-Linked-Size": str(total),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }

        start, end = 0, total  # served slice [start, end)
        status = 200
        range_header = self.headers.get("Range")
        if with_body and range_header is not None:
            m = _RANGE.match(range_header.strip())
            if m is None or int(m["start"]) >= total:
                self._empty(416, {**meta, "Content-Range": f"bytes */{total}"})
                return
            start = int(m["start"])
            end = min(int(m["end"]) + 1, total) if m["end"] else total
            status = 206
            meta["Content-Range"] = f"bytes {start}-{end - 1}/{total}"

        self.send_response(status)
        for name, value in meta.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if not with_body:
            return

        body = bytes(b ^ 0xFF for b in content) if fake.corrupt else content
        cut = end if fake.truncate_to is None else max(start, min(end, fake.truncate_to))
        self.wfile.write(body[start:cut])
        self.wfile.flush()
        if cut < end:
            # Fewer bytes than declared, then EOF: the client sees an incomplete message body.
            self.close_connection = True
