"""Reading a Dockerfile the way `docker build` does, for the instructions this project uses.

Covers line continuations, comment lines (also inside a continued instruction), the JSON
("exec") and shell forms, and `$VAR` / `${VAR}` / `${VAR:-default}` substitution where Docker
applies it (ARG, ENV, COPY, WORKDIR; RUN is left to its shell, which gets the values through its
environment). Anything else is refused, never skipped: an instruction the emulator ignored would
be an image it never really built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = frozenset({"FROM", "ARG", "ENV", "COPY", "RUN", "CMD", "WORKDIR"})
_CONTINUATION = re.compile(r"\\[ \t]*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ${NAME}, ${NAME:-default}, ${NAME:+alternative}: the forms Docker documents.
_REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\+)(.*))?")


class DockerfileError(ValueError):
    """The Dockerfile uses something this emulator does not implement, or is malformed."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str  # as written, continuations joined, not yet substituted
    line: int  # 1-based line where the instruction starts, for error messages

    def __str__(self) -> str:
        return f"line {self.line}: {self.keyword} {self.arguments}"

    def exec_form(self) -> list[str] | None:
        """The JSON-array form's words, or None for the shell form."""
        text = self.arguments.strip()
        if not text.startswith("["):
            return None
        try:
            words = json.loads(text)
        except ValueError:
            return None  # Docker, too, falls back to the shell form for invalid JSON
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            raise DockerfileError(f"{self}: a JSON form must be an array of strings")
        return words


def parse(text: str) -> list[Instruction]:
    lines = text.splitlines()
    if lines and re.match(r"#\s*(escape|syntax|check)\s*=", lines[0], re.IGNORECASE):
        raise DockerfileError(f"parser directive {lines[0]!r} is not supported")
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        # Comment lines are dropped even in the middle of a continued instruction, as Docker does.
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        continued = _CONTINUATION.search(raw)
        pending.append(raw[: continued.start()] if continued else raw)
        if continued:
            continue
        instructions.append(_instruction(" ".join(part.strip() for part in pending), start))
        pending = []
    if pending:
        instructions.append(_instruction(" ".join(part.strip() for part in pending), start))
    return instructions


def _instruction(text: str, line: int) -> Instruction:
    keyword, _, arguments = text.partition(" ")
    keyword = keyword.upper()
    if keyword not in SUPPORTED:
        raise DockerfileError(f"line {line}: {keyword} is not supported by this emulator")
    return Instruction(keyword, arguments.strip(), line)


def words(text: str, variables: Mapping[str, str]) -> list[str]:
    """Split on unquoted whitespace, substituting and removing quotes (ARG, ENV, COPY arguments)."""
    out: list[str] = []
    current: list[str] = []
    started = False
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is None and char.isspace():
            if started:
                out.append("".join(current))
                current, started = [], False
            i += 1
            continue
        started = True
        if char == "\\" and quote != "'" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
            i += 1
            continue
        if char == "$" and quote != "'":
            value, i = _variable(text, i, variables)
            current.append(value)
            continue
        current.append(char)
        i += 1
    if quote is not None:
        raise DockerfileError(f"unterminated quote in {text!r}")
    if started:
        out.append("".join(current))
    return out


def _variable(text: str, i: int, variables: Mapping[str, str]) -> tuple[str, int]:
    """The value of the reference at text[i] ('$'), and the index after it."""
    if text.startswith("${", i):
        end = text.find("}", i)
        if end < 0:
            raise DockerfileError(f"unterminated ${{ in {text!r}")
        body = text[i + 2 : end]
        reference = _REFERENCE.fullmatch(body)
        if reference is None:
            raise DockerfileError(f"unsupported substitution ${{{body}}} in {text!r}")
        name, modifier, word = reference.groups()
        value = variables.get(name, "")
        if modifier == ":-":
            value = value or word
        elif modifier == ":+":
            value = word if value else ""
        return value, end + 1
    match = _NAME.match(text, i + 1)
    if match is None:
        return "$", i + 1
    return variables.get(match.group(), ""), match.end()


def read(path: Path) -> list[Instruction]:
    return parse(path.read_text())
