"""What the function tried to write and where it tried to connect, from an strace log.

A read-only filesystem only makes a stray write fail, and a DNS query to a resolver that does not
answer only makes a lookup fail: libraries shrug both off (onnxruntime logs a warning), so neither
would fail a test. strace, run around the sandbox (`strace -f` follows bwrap into it), records
every attempt whatever its result; this module turns the log into findings:

- a write-intent file syscall (open with O_WRONLY/O_RDWR/O_CREAT/O_TRUNC/O_APPEND, mkdir, rename,
  unlink, link, symlink, chmod, chown, truncate...) on a path outside /tmp, whether it failed or
  not (`mkdir("/home")` fails with EEXIST on a host that has /home, with EROFS on Lambda);
- a connect/sendto/sendmsg/sendmmsg to an IPv4/IPv6 address that is not loopback, or to port 53
  on any address (a name lookup: a function given 127.0.0.1 endpoints has nothing to resolve).

Only syscalls after the interpreter's execve count: bwrap's own set-up writes into its new root.
Python's bytecode cache (`__pycache__`, `.pyc`) is reported apart: the interpreter tries it for
any module without a cached file and silently carries on, as it does on Lambda.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

_NETWORK = ("connect", "sendto", "sendmsg", "sendmmsg")
# syscall -> the (dirfd argument or None, path argument) pairs it writes.
_WRITES: dict[str, tuple[tuple[int | None, int], ...]] = {
    "creat": ((None, 0),),
    "mkdir": ((None, 0),),
    "mkdirat": ((0, 1),),
    "rename": ((None, 0), (None, 1)),
    "renameat": ((0, 1), (2, 3)),
    "renameat2": ((0, 1), (2, 3)),
    "unlink": ((None, 0),),
    "unlinkat": ((0, 1),),
    "rmdir": ((None, 0),),
    "link": ((None, 1),),
    "linkat": ((2, 3),),
    "symlink": ((None, 1),),
    "symlinkat": ((1, 2),),
    "truncate": ((None, 0),),
    "chmod": ((None, 0),),
    "fchmodat": ((0, 1),),
    "chown": ((None, 0),),
    "lchown": ((None, 0),),
    "fchownat": ((0, 1),),
    "mknod": ((None, 0),),
    "mknodat": ((0, 1),),
    "setxattr": ((None, 0),),
    "lsetxattr": ((None, 0),),
    "removexattr": ((None, 0),),
    "lremovexattr": ((None, 0),),
}
# open-like syscall -> (dirfd argument or None, path argument, flags argument).
_OPENS: dict[str, tuple[int | None, int, int]] = {"open": (None, 0, 1), "openat": (0, 1, 2), "openat2": (0, 1, 2)}
_WRITE_FLAGS = re.compile(r"\bO_(WRONLY|RDWR|CREAT|TRUNC|APPEND)\b")
_CWD = ("chdir", "fchdir")
TRACED = (*_NETWORK, *_WRITES, *_OPENS, *_CWD, "execve")

# Writable places besides /tmp: the standard streams and the bit bucket.
_ALLOWED = {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2", "/proc/self/fd/1", "/proc/self/fd/2"}

_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<rest>.*)$")
_FD_PATH = re.compile(r"^(?:\d+|AT_FDCWD)<(?P<path>.*)>$")
_V4 = re.compile(r'sa_family=AF_INET, sin_port=htons\((?P<port>\d+)\), sin_addr=inet_addr\("(?P<addr>[^"]+)"\)')
_V6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((?P<port>\d+)\).*?inet_pton\(AF_INET6, "(?P<addr>[^"]+)"')
DNS_PORT = 53


def strace_command(log: Path) -> list[str]:
    """The prefix that records the syscalls this module reads, for a command and all it starts."""
    return [
        "strace",
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-y",
        "-s",
        "4096",
        "-e",
        "signal=none",
        "-e",
        f"trace={','.join(TRACED)}",
        "-o",
        str(log),
    ]


@dataclass(frozen=True)
class Finding:
    syscall: str
    target: str  # a path, or address:port
    line: str = field(compare=False)

    def __str__(self) -> str:
        return f"{self.syscall} {self.target}   [{self.line.strip()[:200]}]"


@dataclass(frozen=True)
class Report:
    writes: tuple[Finding, ...] = ()
    connections: tuple[Finding, ...] = ()
    bytecode: tuple[Finding, ...] = ()
    started: bool = False  # whether the log shows the interpreter starting at all

    @property
    def forbidden(self) -> tuple[Finding, ...]:
        return self.writes + self.connections

    def merged(self, other: Report) -> Report:
        return Report(
            self.writes + other.writes,
            self.connections + other.connections,
            self.bytecode + other.bytecode,
            self.started or other.started,
        )

    def describe(self) -> str:
        parts = [f"write outside /tmp: {finding}" for finding in _unique(self.writes)]
        parts += [f"connection: {finding}" for finding in _unique(self.connections)]
        return "\n".join(parts) or "none"


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def analyse(lines: Iterable[str], interpreter: str, initial_cwd: str) -> Report:
    writes: list[Finding] = []
    connections: list[Finding] = []
    bytecode: list[Finding] = []
    started = False
    cwd = initial_cwd
    for line in lines:
        match = _LINE.match(line)
        if match is None or "resumed>" in line[:80]:
            continue
        name, args = match["name"], split_arguments(match["rest"])
        if not started:
            started = name == "execve" and bool(args) and _string(args[0]) == interpreter and _succeeded(line)
            continue
        if name in _CWD:
            if _succeeded(line) and args:
                cwd = _resolve(cwd, None if name == "chdir" else args[0], args[0] if name == "chdir" else '"."') or cwd
        elif name in _NETWORK:
            connections += [Finding(name, target, line) for target in _remote_targets(line)]
        else:
            for path in _written_paths(name, args, cwd):
                if _is_bytecode(path):
                    bytecode.append(Finding(name, path, line))
                elif not _allowed(path):
                    writes.append(Finding(name, path, line))
    return Report(tuple(writes), tuple(connections), tuple(bytecode), started)


def analyse_file(log: Path, interpreter: str, initial_cwd: str) -> Report:
    if not log.is_file():
        return Report()
    with log.open(errors="replace") as lines:
        return analyse(lines, interpreter, initial_cwd)


def _written_paths(name: str, args: Sequence[str], cwd: str) -> list[str]:
    if name in _OPENS:
        dirfd, path, flags = _OPENS[name]
        if len(args) <= max(path, flags) or not _WRITE_FLAGS.search(args[flags]):
            return []
        pairs: tuple[tuple[int | None, int], ...] = ((dirfd, path),)
    else:
        pairs = _WRITES.get(name, ())
    paths = []
    for dirfd, path in pairs:
        if path < len(args) and (dirfd is None or dirfd < len(args)):
            resolved = _resolve(cwd, None if dirfd is None else args[dirfd], args[path])
            if resolved is not None:
                paths.append(resolved)
    return paths


def _resolve(cwd: str, dirfd: str | None, path_argument: str) -> str | None:
    path = _string(path_argument)
    if path is None:
        return None
    if not path.startswith("/"):
        base = cwd
        if dirfd is not None and (fd := _FD_PATH.match(dirfd.strip())):
            base = fd["path"]
        path = posixpath.join(base, path)
    return posixpath.normpath(path)


def _string(argument: str) -> str | None:
    argument = argument.strip()
    if not (argument.startswith('"') and argument.rstrip(".").endswith('"')):
        return None
    raw = argument.rstrip(".")[1:-1]
    return raw.encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")


def _allowed(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/") or path in _ALLOWED


def _is_bytecode(path: str) -> bool:
    parts = path.split("/")
    return parts[-1] == "__pycache__" or ("__pycache__" in parts and ".pyc" in parts[-1])


def _remote_targets(line: str) -> list[str]:
    targets = []
    for pattern in (_V4, _V6):
        for found in pattern.finditer(line):
            address, port = ip_address(found["addr"]), int(found["port"])
            mapped = getattr(address, "ipv4_mapped", None)
            loopback = address.is_loopback or (mapped is not None and mapped.is_loopback)
            if not loopback or port == DNS_PORT:
                targets.append(f"{found['addr']}:{port}")
    return targets


def _succeeded(line: str) -> bool:
    return re.search(r"\)\s+=\s+0(\s|$)", line) is not None


def split_arguments(rest: str) -> list[str]:
    """The top-level arguments of an strace call, up to its closing parenthesis."""
    args: list[str] = []
    depth = 0
    current: list[str] = []
    in_string = False
    escaped = False
    for char in rest:
        if in_string:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "([{<":
            depth += 1
        elif char in ")]}>":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    tail = "".join(current).strip()
    if tail and tail != "<unfinished ...>":
        args.append(tail.removesuffix("<unfinished ...>").strip())
    return args
