"""The function's environment variables, set in this process's `os.environ` and put back afterwards.

A Lambda environment is a process of its own; the local server is one too, for as long as it runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class FunctionEnvironment:
    """`apply()` sets (or, for None, removes) variables; `restore()` gives each its value from before."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def apply(self, settings: Mapping[str, str | None]) -> None:
        for name, value in settings.items():
            if name not in self._saved:
                self._saved[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
