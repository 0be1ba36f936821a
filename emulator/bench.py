"""The functions of template.yaml, on one image root and one local S3: what `python -m emulator`
and the tests share."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator import configuration, images
from emulator.function import FunctionConfig, LambdaFunction, lambda_environment
from emulator.image import Image
from emulator.local_s3 import CREDENTIALS, REGION, LocalS3

STACK = "background-remover"


class Bench:
    def __init__(
        self,
        image: Image,
        s3: LocalS3,
        workdir: Path,
        *,
        template: Mapping[str, Any],
        resources: Mapping[str, str],
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.image = image
        self.s3 = s3
        self.workdir = workdir
        self.template = template
        self.resources = dict(resources)
        self.parameters = dict(parameters or {})
        # X-Ray's daemon address: Tracing is Active, so the SDK sends its segments there over UDP.
        # A socket bound here keeps them on 127.0.0.1 and away from anything else listening.
        self._xray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._xray.bind(("127.0.0.1", 0))
        self._functions: list[LambdaFunction] = []

    def function(
        self,
        logical_id: str,
        *,
        environment: Mapping[str, str] | None = None,
        remove: tuple[str, ...] = (),
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        handler: str | None = None,
        extra_binds: Mapping[Path, str] | None = None,
        name: str | None = None,
    ) -> LambdaFunction:
        """A function as the template declares it; the keyword arguments change it, for a test."""
        declared = configuration.template_function(
            self.template,
            logical_id,
            resources=self.resources,
            parameters=self.parameters,
            default_handler=self.image.cmd[0] if self.image.cmd else None,
        )
        name = name or f"{STACK}-{logical_id}"
        memory_mb = memory_mb if memory_mb is not None else declared.memory_mb
        host, port = self._xray.getsockname()
        env = lambda_environment(
            name,
            memory_mb=memory_mb,
            handler=handler or declared.handler,
            region=REGION,
            image_env=self.image.env,
            function_env={**declared.environment, **self.s3.function_environment(), **(environment or {})},
            credentials=CREDENTIALS,
            xray_daemon=f"{host}:{port}",
        )
        for variable in remove:
            env.pop(variable, None)
        config = FunctionConfig(
            name=name,
            handler=handler or declared.handler,
            timeout_s=timeout_s if timeout_s is not None else declared.timeout_s,
            memory_mb=memory_mb,
            environment=env,
            region=REGION,
        )
        workdir = self.workdir / name
        function = LambdaFunction(config, images.layout(self.image, workdir / "sandbox", extra_binds), workdir)
        self._functions.append(function)
        return function

    def close(self) -> None:
        for function in self._functions:
            function.close()
        self._xray.close()
