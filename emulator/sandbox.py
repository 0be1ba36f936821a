"""The execution environment: a bubblewrap sandbox laid out like Lambda's.

- Everything is read-only: the host's /usr, /etc and friends stand in for the base image's OS;
  the interpreter's installation is bound at /var/lang (the base image's path), the image's
  /var/task, /var/runtime and /opt at theirs.
- /tmp is a fresh tmpfs of Lambda's default ephemeral storage (512 MB), the one writable place.
- The function runs as Lambda's sbx_user1051 (uid 993, gid 990), with no capabilities, no HOME
  and exactly the environment it is given.
- The network is the host's, so the function reaches the Runtime API and the local S3 on
  127.0.0.1; what else it tries is recorded by `syscalls`, not blocked, so a test can name it.
  Its resolver is 127.0.0.1, so a name lookup never leaves the machine.

bwrap runs as root here (it needs to mount, and it is not installed setuid): `setpriv` then
drops to the function's user inside the sandbox, as Lambda's own init does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAMBDA_UID = 993
LAMBDA_GID = 990
LAMBDA_USER = "sbx_user1051"
TMP_BYTES = 512 * 1024 * 1024
TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
LANG_DIR = "/var/lang"
# The host's base OS, read-only. Merged-/usr hosts have /bin, /lib... as symlinks into /usr.
_HOST_DIRS = ("usr", "etc", "sys", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Layout:
    """The host directories that become the function's filesystem."""

    task_root: Path  # -> /var/task
    runtime_dir: Path  # -> /var/runtime (the runtime interface client)
    interpreter_prefix: Path  # -> /var/lang (a CPython installation: bin/python3, lib/pythonX.Y)
    opt: Path | None = None  # -> /opt (the baked model)
    scratch: Path = Path("/nonexistent")  # host dir for the sandbox's own files (passwd, an empty dir)
    # Extra read-only binds, host path -> sandbox path (tests use it for fixture handlers).
    extra: Mapping[Path, str] = field(default_factory=dict)


def python_version_dir(prefix: Path) -> str:
    """lib/pythonX.Y of an installation, from its layout (the sandbox may run another version)."""
    (found,) = sorted(path.name for path in (prefix / "lib").glob("python3.*") if (path / "os.py").is_file())
    return found


# The interpreter as the sandbox sees it (the base image's /var/lang/bin/python3).
INTERPRETER = f"{LANG_DIR}/bin/python3"


def bwrap_command(layout: Layout, env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """`bwrap ... setpriv ... argv`, with nothing of the caller's environment passed on."""
    files = _identity_files(layout.scratch)
    empty = layout.scratch / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    command = ["bwrap"]
    for name in _HOST_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            command += ["--symlink", str(host.readlink()), f"/{name}"]
        elif host.is_dir():
            command += ["--ro-bind", str(host), f"/{name}"]
    command += ["--ro-bind", str(files["passwd"]), "/etc/passwd", "--ro-bind", str(files["group"]), "/etc/group"]
    command += ["--ro-bind", str(files["resolv.conf"]), "/etc/resolv.conf"]
    command += ["--dev", "/dev", "--proc", "/proc"]
    command += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    # Directories bwrap creates for mount points would otherwise be 0700 (root's).
    command += ["--perms", "0755", "--dir", "/var", "--perms", "0755", "--dir", "/opt"]
    command += ["--ro-bind", str(layout.interpreter_prefix), LANG_DIR]
    # Only the standard library: whatever else the host installed there is not in the base image.
    site = f"{LANG_DIR}/lib/{python_version_dir(layout.interpreter_prefix)}/site-packages"
    if (layout.interpreter_prefix / site.removeprefix(f"{LANG_DIR}/")).is_dir():
        command += ["--ro-bind", str(empty), site]
    command += ["--ro-bind", str(layout.runtime_dir), RUNTIME_DIR, "--ro-bind", str(layout.task_root), TASK_ROOT]
    if layout.opt is not None:
        command += ["--ro-bind", str(layout.opt), "/opt"]
    for host_path, sandbox_path in layout.extra.items():
        command += ["--ro-bind", str(host_path), sandbox_path]
    command += ["--remount-ro", "/"]
    command += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "localhost"]
    command += ["--die-with-parent", "--new-session", "--clearenv", "--chdir", TASK_ROOT]
    for name, value in env.items():
        command += ["--setenv", name, value]
    command += [
        "setpriv",
        f"--reuid={LAMBDA_UID}",
        f"--regid={LAMBDA_GID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]
    return command + list(argv)


def _identity_files(scratch: Path) -> dict[str, Path]:
    """The host's passwd/group plus Lambda's function user, whose home does not exist."""
    scratch.mkdir(parents=True, exist_ok=True)
    passwd = scratch / "passwd"
    group = scratch / "group"
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + f"{LAMBDA_USER}:x:{LAMBDA_UID}:{LAMBDA_GID}::/home/{LAMBDA_USER}:/sbin/nologin\n"
    )
    group.write_text(Path("/etc/group").read_text() + f"{LAMBDA_USER}:x:{LAMBDA_GID}:\n")
    # Name lookups go to 127.0.0.1, where nothing answers: a function given numeric 127.0.0.1
    # endpoints has nothing to resolve, and a stray query (recorded by `syscalls`) never leaves.
    resolv = scratch / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    return {"passwd": passwd, "group": group, "resolv.conf": resolv}


def installation_prefix(python: Path) -> Path:
    """The CPython installation behind an interpreter (a venv's points at its base)."""
    import subprocess

    out = subprocess.run(
        [str(python), "-c", "import sys; print(sys.base_prefix)"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())
