"""Settings from the environment: the one parser every setting goes through.

Unset or blank means the default. Anything else must parse, or start-up fails with a
ConfigurationError that names the variable: a typo (`MODEL_OFFLINE=treu`) must never quietly mean
something else. On/off words are shared with request options (handler.core.image.options).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, overload

from handler.core.errors import ConfigurationError

ON_WORDS = frozenset({"1", "true", "yes", "on"})
OFF_WORDS = frozenset({"0", "false", "no", "off"})

D = TypeVar("D")
V = TypeVar("V")
C = TypeVar("C", bound=str)


def switch_word(text: str) -> bool | None:
    """True or False for an on/off word (any case, spaces around it ignored), None for any other text."""
    word = text.strip().lower()
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    return None


class Environment:
    """Typed, strict reads of one environment mapping (`os.environ` unless given)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The value as set, or None when unset or blank."""
        value = self._environ.get(name)
        return value if value is not None and value.strip() else None

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def switch(self, name: str, default: bool) -> bool:
        return self._parsed(name, default, switch_word, "1 or 0 (true/false, on/off)")

    def positive_int(self, name: str, default: D) -> int | D:
        return self._parsed(name, default, _positive_int, "a positive whole number")

    def positive_float(self, name: str, default: D) -> float | D:
        return self._parsed(name, default, _positive_float, "a positive number")

    @overload
    def choice(self, name: str, choices: Sequence[C], default: C, *, any_case: bool = False) -> C: ...
    @overload
    def choice(self, name: str, choices: Sequence[C], default: None, *, any_case: bool = False) -> C | None: ...
    def choice(self, name: str, choices: Sequence[C], default: C | None, *, any_case: bool = False) -> C | None:
        """One of `choices`, exactly as spelt there, or in any case with `any_case`."""
        fold: Callable[[str], str] = str.lower if any_case else str
        by_text = {fold(choice): choice for choice in choices}
        return self._parsed(name, default, lambda text: by_text.get(fold(text.strip())), f"one of {', '.join(choices)}")

    def names(self, name: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        value = self.raw(name)
        if value is None:
            return tuple(default)
        return tuple(part.strip() for part in value.split(",") if part.strip())

    def numbers(self, name: str, count: int, default: D) -> tuple[float, ...] | D:
        """`count` numbers separated by commas and/or spaces."""
        return self._parsed(name, default, lambda text: _numbers(text, count), f"{count} numbers")

    def _parsed(self, name: str, default: D, parse: Callable[[str], V | None], expected: str) -> V | D:
        value = self.raw(name)
        if value is None:
            return default
        parsed = parse(value)
        if parsed is None:
            raise ConfigurationError(f"{name} must be {expected}, got {value!r}")
        return parsed


def _positive_int(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value > 0 else None


def _positive_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value > 0 else None


def _numbers(text: str, count: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        return None
    return values if len(values) == count else None
