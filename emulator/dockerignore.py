"""The build context as Docker sends it: the folder minus what `.dockerignore` excludes.

Docker's rules (moby/patternmatcher, which BuildKit uses too), as far as this project needs them:
one pattern a line, `#` lines and blank lines skipped, each pattern cleaned like a path with its
leading `/` dropped and matched against the slash-separated path from the context's root (not at
any depth, unlike .gitignore); `*` and `?` never cross a `/`, `**` crosses any number; a pattern
that matches a folder matches everything under it; `!` re-includes; the last matching line wins.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".dockerignore"
_GLOB = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class _Pattern:
    text: str
    exception: bool
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        """The path itself or one of its parent folders matches."""
        if self.regex.fullmatch(path):
            return True
        parts = path.split("/")
        return any(self.regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts)))

    def may_reinclude_under(self, folder: str) -> bool:
        """Could this exception match something inside `folder`? (So the walk must go in.)"""
        literal = self.text[: m.start()] if (m := _GLOB.search(self.text)) else self.text
        return literal.startswith(folder + "/") or (folder + "/").startswith(literal) or literal == folder


class DockerIgnore:
    def __init__(self, lines: list[str]) -> None:
        self.patterns = [pattern for line in lines if (pattern := _compile(line)) is not None]

    @classmethod
    def of(cls, context: Path) -> DockerIgnore:
        file = context / IGNORE_FILE
        return cls(file.read_text().splitlines() if file.is_file() else [])

    def excluded(self, path: str) -> bool:
        excluded = False
        for pattern in self.patterns:
            if pattern.exception == excluded and pattern.matches(path):
                excluded = not pattern.exception
        return excluded

    def files(self, context: Path, under: str = "") -> Iterator[str]:
        """Every file (and symlink) the context holds under `under`, as relative slash paths."""
        start = context / under if under else context
        for folder, dirs, names in os.walk(start):
            relative = Path(folder).relative_to(context).as_posix()
            prefix = "" if relative == "." else f"{relative}/"
            # Pruning an excluded folder is only safe when no exception could bring back part of it.
            dirs[:] = sorted(
                d
                for d in dirs
                if not self.excluded(prefix + d)
                or any(p.exception and p.may_reinclude_under(prefix + d) for p in self.patterns)
            )
            for name in sorted(names):
                if not self.excluded(prefix + name):
                    yield prefix + name


def _compile(line: str) -> _Pattern | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    exception = text.startswith("!")
    if exception:
        text = text[1:].strip()
    text = posixpath.normpath(text).lstrip("/")
    if text in ("", "."):
        return None
    return _Pattern(text, exception, re.compile(_regex(text)))


def _regex(pattern: str) -> str:
    """Go's filepath.Match syntax plus `**`, as patternmatcher translates it."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # `**/` also matches no folder at all
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f".dockerignore: unterminated [ in {pattern!r}")
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]")
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)
