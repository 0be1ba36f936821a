"""One Lambda function: execution environments that come and go, invoked as Lambda invokes them.

- The first invocation starts an environment (a cold start): the runtime interface client in the
  sandbox, under strace. Later invocations reuse it while it lives.
- `Invoke` refuses a synchronous request over 6,291,456 bytes before any runtime sees it
  (`RequestTooLargeException`, HTTP 413), as Lambda's API does.
- The function's timeout runs from the moment the runtime takes the invocation; when it passes,
  the environment is killed and the caller gets `Sandbox.Timedout`. Init is allowed Lambda's
  10 s plus the timeout (an init that overruns is retried inside the first invocation there).
- A runtime that exits mid-invocation gives `Runtime.ExitError`; a failed init, the error the
  runtime posted. The next invocation then starts a new environment, as Lambda does.
- Each environment runs in a memory cgroup of the function's memory size (emulator/memory.py): a
  runtime over it is killed by the kernel, and the caller gets `Runtime.OutOfMemory`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator import sandbox, syscalls
from emulator.memory import MemoryLimit
from emulator.runtime_api import REQUEST_LIMIT, Invocation, RuntimeAPI, error_document, new_request_id

INIT_LIMIT_S = 10.0
_WATCHER_GRACE_S = 10.0
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    handler: str  # module.function, the image's CMD
    timeout_s: float
    memory_mb: int
    environment: Mapping[str, str]  # everything but AWS_LAMBDA_RUNTIME_API, which each environment adds
    region: str = "us-east-1"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{self.name}"


@dataclass(frozen=True)
class InvokeResult:
    """What Lambda's Invoke API returns: its HTTP status, X-Amz-Function-Error and the payload."""

    status: int
    payload: bytes
    function_error: str | None = None
    request_id: str = ""
    cold_start: bool = False

    @property
    def document(self) -> dict[str, Any]:
        loaded = json.loads(self.payload)
        return loaded if isinstance(loaded, dict) else {"value": loaded}

    @property
    def error_type(self) -> str | None:
        if self.function_error is None and self.status == 200:
            return None
        return str(self.document.get("errorType") or self.document.get("Type"))


@dataclass
class _Environment:
    api: RuntimeAPI
    process: subprocess.Popen[bytes]
    trace: Path
    memory: MemoryLimit | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    current: Invocation | None = None


class LambdaFunction:
    def __init__(self, config: FunctionConfig, layout: sandbox.Layout, workdir: Path, *, trace: bool = True) -> None:
        self.config = config
        self.layout = layout
        self.workdir = workdir
        self.trace = trace
        self.log_path = workdir / "function.log"
        self.cold_starts = 0
        self.invocations_delivered = 0
        self._environment: _Environment | None = None
        self._traces: list[Path] = []
        # Whether the last environment started had its memory size enforced (see emulator/memory.py).
        self.memory_enforced = False
        workdir.mkdir(parents=True, exist_ok=True)

    def invoke(self, payload: bytes, *, synchronous: bool = True) -> InvokeResult:
        request_id = new_request_id()
        if synchronous and len(payload) > REQUEST_LIMIT:
            message = f"{len(payload)} byte payload is too large for the RequestResponse invocation type (limit {REQUEST_LIMIT} bytes)"
            return InvokeResult(
                413,
                json.dumps({"Type": "User", "message": message, "errorType": "RequestTooLargeException"}).encode(),
                request_id=request_id,
            )
        environment = self._idle_environment()
        cold = environment is None
        if environment is None:
            environment = self._start()
        invocation = Invocation(request_id, payload, self.config.arn, int(self.config.timeout_s * 1000))
        environment.current = invocation
        if environment.exited.is_set():  # it died before `current` was set: the watcher missed it
            invocation.handed_out.set()
            invocation.settled.set()
        environment.api.submit(invocation)
        result = self._await(environment, invocation)
        return InvokeResult(result.status, result.payload, result.function_error, request_id, cold)

    def _idle_environment(self) -> _Environment | None:
        """The live environment once its runtime is back in /next; None if there is none (or it
        died on the way, as after a response it could not post): Lambda only reuses idle ones."""
        environment = self._environment
        if environment is None or environment.exited.is_set():
            return None
        if environment.current is not None:
            environment.api.waiting.wait()  # set by /next, or by the watcher when the process ends
        return None if environment.exited.is_set() else environment

    def _await(self, environment: _Environment, invocation: Invocation) -> InvokeResult:
        # Init: until the runtime takes the invocation, or its process ends.
        if not invocation.handed_out.wait(INIT_LIMIT_S + self.config.timeout_s):
            self._kill(environment)
            return self._timed_out(invocation, "init")
        if invocation.deadline_ms is None:  # woken by the watcher: the runtime never took it
            return self._died(environment, invocation)
        self.invocations_delivered += 1
        assert invocation.deadline_ms is not None
        remaining = invocation.deadline_ms / 1000 - time.time()
        if not invocation.settled.wait(max(remaining, 0)):
            self._kill(environment)
            return self._timed_out(invocation, "invoke")
        if invocation.outcome is None:
            return self._died(environment, invocation)
        outcome = invocation.outcome
        return InvokeResult(200, outcome.payload, outcome.function_error)

    def _timed_out(self, invocation: Invocation, phase: str) -> InvokeResult:
        seconds = self.config.timeout_s
        message = f"RequestId: {invocation.request_id} Error: Task timed out after {seconds:.2f} seconds"
        self._log(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {invocation.request_id} Task timed out after {seconds:.2f} seconds ({phase})"
        )
        return InvokeResult(200, error_document("Sandbox.Timedout", message), "Unhandled")

    def _died(self, environment: _Environment, invocation: Invocation) -> InvokeResult:
        if environment.api.init_error is not None:
            error = environment.api.init_error
            return InvokeResult(200, error.payload, error.function_error)
        code = environment.process.wait()
        if environment.memory is not None and environment.memory.oom_killed():
            # Lambda's words for it: the kernel's SIGKILL, reported as running out of memory.
            message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: signal: killed"
            self._log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {invocation.request_id} {message} (out of memory)")
            return InvokeResult(200, error_document("Runtime.OutOfMemory", message), "Unhandled")
        status = f"signal: {signal.Signals(-code).name.lower()}" if code < 0 else f"exit status {code}"
        message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: {status}"
        return InvokeResult(200, error_document("Runtime.ExitError", message), "Unhandled")

    def _start(self) -> _Environment:
        if self._environment is not None:
            self._stop(self._environment)
        self.cold_starts += 1
        api = RuntimeAPI()
        env = {**self.config.environment, "AWS_LAMBDA_RUNTIME_API": api.address}
        command = sandbox.bwrap_command(
            self.layout, env, [sandbox.INTERPRETER, "-m", "awslambdaric", self.config.handler]
        )
        trace = self.workdir / f"strace-{self.cold_starts}.log"
        if self.trace:
            command = syscalls.strace_command(trace) + command
            self._traces.append(trace)
        memory = MemoryLimit.create(self.config.name, self.config.memory_mb)
        self.memory_enforced = memory is not None
        if memory is not None:
            # The shell joins the cgroup and then becomes the command: everything it starts is in it.
            join = f'echo $$ > "{memory.path / "cgroup.procs"}" && exec "$@"'
            command = ["/bin/sh", "-c", join, "sh", *command]
        self._log(f"--- cold start {self.cold_starts}: {self.config.name} ({self.config.handler})")
        log = self.log_path.open("ab")
        # A session of its own: a timeout kills strace, bwrap and (through bwrap's
        # --die-with-parent and its PID namespace) everything in the sandbox, in one signal.
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        environment = _Environment(api, process, trace, memory)
        threading.Thread(target=self._watch, args=(environment,), daemon=True).start()
        self._environment = environment
        return environment

    def _watch(self, environment: _Environment) -> None:
        environment.process.wait()
        environment.exited.set()
        environment.api.waiting.set()
        if environment.current is not None:
            # Wake whoever waits on the invocation: it will find no outcome.
            environment.current.handed_out.set()
            environment.current.settled.set()
        environment.api.close()

    def _kill(self, environment: _Environment) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(environment.process.pid, signal.SIGKILL)
        environment.process.wait()
        # Set by the watcher thread at once; bounded, since a daemon thread no longer runs once the
        # interpreter is exiting (an environment closed by a finaliser then would wait for ever).
        environment.exited.wait(_WATCHER_GRACE_S)

    def _stop(self, environment: _Environment) -> None:
        if not environment.exited.is_set():
            self._kill(environment)
        if environment.memory is not None:
            environment.memory.remove()

    def close(self) -> None:
        if self._environment is not None:
            self._stop(self._environment)
            self._environment = None

    def syscall_report(self) -> syscalls.Report:
        """Every environment's forbidden writes and connections so far."""
        report = syscalls.Report()
        for trace in self._traces:
            report = report.merged(syscalls.analyse_file(trace, sandbox.INTERPRETER, sandbox.TASK_ROOT))
        return report

    def _log(self, line: str) -> None:
        with self.log_path.open("a") as log:
            log.write(line + "\n")

    def __enter__(self) -> LambdaFunction:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def lambda_environment(
    config_name: str,
    *,
    memory_mb: int,
    handler: str,
    region: str,
    image_env: Mapping[str, str],
    function_env: Mapping[str, str],
    credentials: Mapping[str, str],
    xray_daemon: str,
) -> dict[str, str]:
    """The variables Lambda sets for a python3.12 image function, then the image's, then the function's.

    Lambda's reserved variables win over the image's ENV, and the function's Environment cannot
    set them (CloudFormation refuses reserved names), so the order only matters for the image."""
    stream = time.strftime("%Y/%m/%d/[$LATEST]") + os.urandom(16).hex()
    reserved = {
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": config_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": xray_daemon,
        "_AWS_XRAY_DAEMON_ADDRESS": xray_daemon.split(":")[0],
        "_AWS_XRAY_DAEMON_PORT": xray_daemon.split(":")[1],
        "LAMBDA_TASK_ROOT": sandbox.TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": sandbox.RUNTIME_DIR,
        "TZ": ":UTC",
        **credentials,
    }
    base_image = {
        "LANG": "en_US.UTF-8",
        "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
        "PYTHONPATH": sandbox.RUNTIME_DIR,
    }
    return {**base_image, **_without(image_env, _HOST_ONLY), **function_env, **reserved}


# Variables a stand-in image's environment may carry from the host that Lambda never has.
_HOST_ONLY = ("HOME", "PYTHONHOME", "VIRTUAL_ENV")


def _without(env: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in names}
