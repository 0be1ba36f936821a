"""What Lambda passes its handlers as `context`, for the local runs (`serve`, `invoke`, tests)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
# The deployed functions' timeouts (template.yaml), which bound each local call too.
API_TIMEOUT_SECONDS = 28
JOBS_TIMEOUT_SECONDS = 300


@dataclass
class LocalLambdaContext:
    """What Lambda passes as `context`: the attributes Powertools and the entry points read."""

    function_name: str
    timeout_seconds: int
    memory_limit_in_mb: int = 3008
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
