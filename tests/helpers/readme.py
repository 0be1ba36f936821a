"""README.md as the tests read it: its local part and its deploy part, their code blocks, its tables,
and the commands its shell lines run.

The local part is everything before "## Deploy": it runs on a laptop, offline, and the tests run it
as written. From "## Deploy" on, the commands need an AWS account: the tests check them statically.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOY_HEADING = "\n## Deploy\n"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
_HEADING = re.compile(r"^(#{2,3}) (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    # The `##`/`###` heading the block sits under.
    section: str

    @property
    def lines(self) -> list[str]:
        """Its commands, one a line: continuation lines joined, blank lines dropped."""
        return [line for line in self.text.replace("\\\n", " ").splitlines() if line.strip()]


def text() -> str:
    return README.read_text()


def parts() -> tuple[str, str]:
    """(local part, deploy part)."""
    document = text()
    assert DEPLOY_HEADING in document, "README.md has no '## Deploy' section"
    local, deploy = document.split(DEPLOY_HEADING, 1)
    return local, DEPLOY_HEADING + deploy


def blocks(part: str) -> list[Block]:
    headings = [(match.start(), match.group(2)) for match in _HEADING.finditer(part)]
    found = []
    for match in _FENCE.finditer(part):
        section = next((title for start, title in reversed(headings) if start < match.start()), "")
        found.append(Block(match.group(1), match.group(2), section))
    return found


def section(part: str, title: str) -> str:
    """The text under the heading `title` (any level), up to the next heading of that level or above."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", part, re.MULTILINE)
    assert match is not None, f"README.md has no section {title!r}"
    level = len(match.group(1))
    rest = part[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table(part: str) -> list[list[str]]:
    """The rows of the first Markdown table in `part` (header and rule dropped), cells stripped."""
    lines = [line for line in part.splitlines() if line.startswith("|")]
    assert len(lines) > 2, "no table"
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


# What a `$(...)` is replaced with in the command around it.
SUBSTITUTED = "__substituted__"
# Where a shell starts a new command within a line.
_SEPARATORS = {"(", ")", "$(", "&&", "||", "|", ";", "&", "{", "}"}
_KEYWORDS = {"if", "then", "else", "fi", "do", "done", "while", "for", "!"}


def commands(line: str) -> list[list[str]]:
    """The simple commands one shell line runs (command substitutions included), as argument lists,
    without leading variable assignments and redirections; `eval "$(...)"` is looked into."""
    found: list[list[str]] = []
    for chunk in _substitutions(line):
        lexer = shlex.shlex(chunk, posix=True, punctuation_chars="();|&<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        skip_next = False
        for token in lexer:
            if skip_next:
                skip_next = False
                continue
            if token in _SEPARATORS or set(token) <= set("();|&"):
                found.append(current)
                current = []
            elif token in ("<", ">", ">>", "2>", "2>&1"):
                skip_next = True
            elif not current and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\[@\])?=.*", token) or token in _KEYWORDS):
                continue
            else:
                current.append(token)
        found.append(current)
    return [command for command in found if command and not command[0].startswith(("$", "-", SUBSTITUTED))]


def _substitutions(line: str) -> list[str]:
    """The line with each `$(...)` cut out, then the inside of each (nested ones too)."""
    pieces = []
    outer = []
    depth = 0
    start = 0
    index = 0
    while index < len(line):
        if line.startswith("$(", index):
            if depth == 0:
                outer.append(line[start:index])
                start = index + 2
            depth += 1
            index += 2
            continue
        if line[index] == ")" and depth:
            depth -= 1
            if depth == 0:
                pieces.extend(_substitutions(line[start:index]))
                outer.append(f" {SUBSTITUTED} ")
                start = index + 1
        index += 1
    outer.append(line[start:])
    return ["".join(outer), *pieces]


# What a fresh shell has: a system PATH (no activated venv), a HOME of its own, nothing else of ours.
FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"
# Copied into a checkout view (so that what a command writes there is seen); everything else is linked.
_COPIED = ("samples", "events", ".gitignore")
# Never linked: what the examples write, and the repository's own metadata.
_LEFT_OUT = (".git", "out")


def checkout_view(folder: Path) -> Path:
    """A folder that looks like the checkout after the two set-up commands, for running README lines
    in: small inputs copied, the rest (the code, .venv, .cache, the Makefile) linked to the real one,
    so that what a line writes lands here, apart from the repository and from other tests."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name in _LEFT_OUT or entry.name == ".venv":
            continue
        target = folder / entry.name
        if entry.name in _COPIED:
            (shutil.copytree if entry.is_dir() else shutil.copy)(entry, target)
        else:
            target.symlink_to(entry)
    # The interpreter running the tests is the checkout's .venv (make test runs it).
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def files_in(view: Path) -> set[str]:
    """The files in a checkout view itself (rglob does not go through its links), relative to it."""
    return {path.relative_to(view).as_posix() for path in view.rglob("*") if path.is_file() and not path.is_symlink()}
