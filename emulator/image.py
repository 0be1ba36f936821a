"""`docker build` without Docker: run the Dockerfile's steps for real into a folder.

For each instruction, in order:

* COPY copies exactly the sources it names from the build context after `.dockerignore` (a source
  the context lacks fails the build, as it does in Docker);
* RUN runs `/bin/sh -c` in a bubblewrap sandbox in which the image's folders (/var/task, /opt,
  /tmp) appear at their real paths, holding exactly what the steps before put there, the base
  image's interpreter is `/var/lang/bin/python` (and `pip`), and the rest of the host is there
  read-only in place of the base image's operating system;
* ARG, ENV, WORKDIR and CMD are applied as Docker applies them.

What differs from Docker, on purpose and only here:

* the base image is not pulled: its environment is restated from the image's configuration, and
  its interpreter is a copy of this machine's Python (stdlib and pip, nothing of ours);
  the base image's Python is 3.12, so a step that depends on the Python version may differ;
* the network is the host's. `step_env` is added to every RUN's environment so that tests can
  point a download at a fake server on 127.0.0.1 (HF_ENDPOINT of tests/fakehub.py): that is the
  one stand-in for the internet. The variables in `CONNECTION_VARIABLES` (proxy and CA bundle) are
  passed from the host, since they say how this machine reaches the package registry, not what is
  installed; the host's pip configuration files are hidden, as they would be in Docker;
* a RUN is served from `.cache/` only when everything it can fetch is pinned by hash in its inputs
  (`pip --require-hashes`), so a cached layer is never stale; other RUNs (the model download)
  always run, where Docker would reuse them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import posixpath
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emulator.dockerfile import DockerfileError, Instruction, read, words
from emulator.dockerignore import DockerIgnore

REPO_ROOT = Path(__file__).resolve().parents[1]

# `docker inspect public.ecr.aws/lambda/python:3.12`: its Env and WorkingDir.
BASE_IMAGES: dict[str, tuple[dict[str, str], str]] = {
    "public.ecr.aws/lambda/python:3.12": (
        {
            "LANG": "en_US.UTF-8",
            "TZ": ":/etc/localtime",
            "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
        },
        "/var/task",
    ),
}
# Where the base image keeps its Python: the clean interpreter is mounted there.
PYTHON_HOME = "/var/lang"
# The image's own folders (/root: HOME in a build). Everything else a RUN sees is the host's, read-only.
IMAGE_DIRS = ("/var/task", "/opt", "/tmp", "/root")
# Where a build step finds the host files its step_env names (bound read-only, never in the image).
STEP_INPUTS = "/run/step-inputs"
CONNECTION_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_CERT",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)
# pip's site-wide configuration files: the host's, not the base image's, so hidden in the sandbox.
# (The user's are under /root, which is the image's own folder.)
PIP_CONFIG_PATHS = ("/etc/xdg/pip", "/etc/pip.conf")
# Bumped whenever what a cached layer holds changes shape.
LAYER_FORMAT = "layers-1"
# A RUN whose every download pip checks against a hash in the step's own inputs.
HASH_PINNED = "--require-hashes"


class BuildError(RuntimeError):
    """A step failed, or the Dockerfile asks for something this emulator does not do."""


@dataclass(frozen=True)
class Image:
    root: Path  # the image's files at their paths: root/var/task, root/opt/model, root/tmp ...
    env: dict[str, str]  # the final image's environment (base image's + ENV)
    cmd: list[str]  # the Dockerfile's CMD
    python: Path  # a clean interpreter standing in for the base image's (stdlib + pip only)


@dataclass
class _State:
    root: Path
    env: dict[str, str]
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    cmd: list[str] = field(default_factory=list)
    base: str | None = None

    @property
    def variables(self) -> dict[str, str]:
        # ENV wins over an ARG of the same name, as in Docker.
        return {**self.args, **self.env}


def build_image(
    dest: Path,
    *,
    context: Path = REPO_ROOT,
    build_args: Mapping[str, str] = {},
    step_env: Mapping[str, str] = {},
    dockerfile: str = "Dockerfile",
    cache_dir: Path | None = None,
) -> Image:
    """Build `context`/`dockerfile` into `dest` (which must not exist or be empty).

    `step_env` is added to the environment of RUN steps only, never to the image: it is how a test
    substitutes a server on 127.0.0.1 for the internet (e.g. HF_ENDPOINT of a fake hub).
    `cache_dir` holds the cached layers (default: the context's .cache/image-layers).
    """
    if shutil.which("bwrap") is None:
        raise BuildError("bubblewrap is missing: `apt-get install bubblewrap` (make test installs it when root)")
    context = context.resolve()
    layers = (cache_dir or context / ".cache" / "image-layers").resolve()
    python_home = clean_python(REPO_ROOT / ".cache" / "image-python")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise BuildError(f"{dest} is not empty")
    _empty_root(dest)
    try:
        instructions = read(context / dockerfile)
    except DockerfileError as error:
        raise BuildError(str(error)) from error
    state = _State(root=dest.resolve(), env={})
    for instruction, key in _steps(instructions, state, context, build_args, python_home.name):
        _run(instruction, state, python_home, step_env, key, layers)
    return Image(root=state.root, env=dict(state.env), cmd=state.cmd, python=python_home / "bin" / "python3")


def run_keys(
    dest: Path, *, context: Path = REPO_ROOT, build_args: Mapping[str, str] = {}, dockerfile: str = "Dockerfile"
) -> list[tuple[str, str]]:
    """Each RUN's arguments and layer key as `build_image` computes them, without running any RUN.

    A layer's key is what decides, here as in Docker's cache, whether the step runs again: the
    steps before it and the files they copied. The COPYs are made into `dest` (to digest them).
    """
    _empty_root(dest)
    state = _State(root=dest.resolve(), env={})
    steps = _steps(read(context / dockerfile), state, context.resolve(), build_args, clean_python_name())
    return [(instruction.arguments, key) for instruction, key in steps]


def _steps(
    instructions: Sequence[Instruction],
    state: _State,
    context: Path,
    build_args: Mapping[str, str],
    python_name: str,
) -> Iterator[tuple[Instruction, str]]:
    """Apply every instruction but RUN to `state`; yield each RUN with its layer key, in order."""
    ignore = DockerIgnore.of(context)
    known_args = {**_platform_args(), **build_args}
    # Everything a layer depends on goes into its key: the interpreter, then each step in order.
    key = hashlib.sha256(f"{LAYER_FORMAT}\n{python_name}\n".encode())
    for instruction in instructions:
        key.update(f"{instruction.keyword} {instruction.arguments}\n".encode())
        if instruction.keyword == "FROM":
            _from(instruction, state)
        elif state.base is None:
            raise BuildError(f"{instruction}: before FROM")
        elif instruction.keyword in ("ARG", "ENV"):
            _declare(instruction, state, known_args)
            key.update(json.dumps(state.variables, sort_keys=True).encode())
        elif instruction.keyword == "WORKDIR":
            (path,) = words(instruction.arguments, state.variables)
            state.workdir = posixpath.normpath(posixpath.join(state.workdir, path))
            _image_path(state.root, state.workdir, instruction).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            key.update(_copy(instruction, context, ignore, state))
        elif instruction.keyword == "RUN":
            yield instruction, key.hexdigest()
        elif instruction.keyword == "CMD":
            state.cmd = instruction.exec_form() or ["/bin/sh", "-c", instruction.arguments]


def copy_sources(context: Path = REPO_ROOT, build_args: Mapping[str, str] = {}) -> list[str]:
    """Every COPY's sources, with variables substituted as the build would (for checking the context)."""
    state = _State(root=context, env={})
    known_args = {**_platform_args(), **build_args}
    sources: list[str] = []
    for instruction in read(context / "Dockerfile"):
        if instruction.keyword == "FROM":
            _from(instruction, state)
        elif instruction.keyword in ("ARG", "ENV"):
            _declare(instruction, state, known_args)
        elif instruction.keyword == "COPY":
            sources += (instruction.exec_form() or words(instruction.arguments, state.variables))[:-1]
    return sources


def _declare(instruction: Instruction, state: _State, known_args: Mapping[str, str]) -> None:
    if instruction.keyword == "ENV":
        state.env.update(_env_pairs(instruction, state.variables))
        return
    for word in words(instruction.arguments, state.variables):
        name, has_default, default = word.partition("=")
        state.args[name] = known_args.get(name, default if has_default else "")


def _empty_root(root: Path) -> None:
    for folder in IMAGE_DIRS:
        (root / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)


def _platform_args() -> dict[str, str]:
    """BuildKit's automatic platform ARGs, for a build on and for this machine."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "TARGETPLATFORM": f"linux/{arch}",
        "TARGETOS": "linux",
        "TARGETARCH": arch,
        "BUILDPLATFORM": f"linux/{arch}",
        "BUILDOS": "linux",
        "BUILDARCH": arch,
    }


def _from(instruction: Instruction, state: _State) -> None:
    if state.base is not None:
        raise BuildError(f"{instruction}: multi-stage builds are not supported")
    base = instruction.arguments.strip()
    if base not in BASE_IMAGES:
        raise BuildError(f"{instruction}: unknown base image (known: {', '.join(BASE_IMAGES)})")
    env, workdir = BASE_IMAGES[base]
    state.base, state.env, state.workdir = base, dict(env), workdir


def _env_pairs(instruction: Instruction, variables: Mapping[str, str]) -> dict[str, str]:
    parts = words(instruction.arguments, variables)
    if parts and "=" not in parts[0]:  # the legacy `ENV NAME value with spaces` form
        return {parts[0]: " ".join(parts[1:])}
    pairs: dict[str, str] = {}
    for part in parts:
        name, equals, value = part.partition("=")
        if not equals:
            raise BuildError(f"{instruction}: {part!r} is not NAME=value")
        pairs[name] = value
    return pairs


def _image_path(root: Path, path: str, instruction: Instruction) -> Path:
    """Where an absolute image path lives under `root`; only the image's own folders may be written."""
    path = posixpath.normpath(path)
    if not any(path == folder or path.startswith(folder + "/") for folder in IMAGE_DIRS):
        raise BuildError(f"{instruction}: {path} is outside the folders the emulator gives the image {IMAGE_DIRS}")
    return root / path.lstrip("/")


def _copy(instruction: Instruction, context: Path, ignore: DockerIgnore, state: _State) -> bytes:
    """Copy the named sources into the image; return a digest of what was copied (the cache key's part)."""
    parts = instruction.exec_form() or words(instruction.arguments, state.variables)
    if any(part.startswith("--") for part in parts):
        raise BuildError(f"{instruction}: COPY flags are not supported")
    if len(parts) < 2:
        raise BuildError(f"{instruction}: COPY needs a source and a destination")
    *sources, destination = parts
    into_folder = destination.endswith("/")
    if len(sources) > 1 and not into_folder:
        raise BuildError(f"{instruction}: with several sources the destination must end with /")
    destination = posixpath.join(state.workdir, destination)
    digest = hashlib.sha256()
    for source in sources:
        relative = posixpath.normpath(source).lstrip("/")
        if relative == ".." or relative.startswith("../") or any(c in relative for c in "*?["):
            raise BuildError(f"{instruction}: source {source!r} is outside the context or a wildcard")
        path = context / relative
        if path.is_dir() and relative != ".":
            files = [(name, posixpath.relpath(name, relative)) for name in ignore.files(context, relative)]
            if not files and ignore.excluded(relative):
                raise BuildError(f"{instruction}: {source}: not found in the build context (after .dockerignore)")
            target_folder = destination
        elif path.is_file() and not ignore.excluded(relative):
            # Into a folder (trailing /) under its own name, else to the destination's path and name.
            name = posixpath.basename(relative if into_folder else destination)
            files = [(relative, name)]
            target_folder = destination if into_folder else posixpath.dirname(destination)
        else:
            raise BuildError(f"{instruction}: {source}: not found in the build context (after .dockerignore)")
        for name, inside in files:
            target = _image_path(state.root, posixpath.join(target_folder, inside), instruction)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / name, target, follow_symlinks=False)
            digest.update(f"{posixpath.join(target_folder, inside)}\0{stat.S_IMODE(target.lstat().st_mode)}\0".encode())
            digest.update(_file_digest(target))
    return digest.digest()


def _file_digest(path: Path) -> bytes:
    if path.is_symlink():
        return os.readlink(path).encode()
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").digest()


def _run(
    instruction: Instruction,
    state: _State,
    python_home: Path,
    step_env: Mapping[str, str],
    key: str,
    layers: Path,
) -> None:
    command = instruction.exec_form() or ["/bin/sh", "-c", instruction.arguments]
    cached = layers / key if _only_pinned_installs(instruction.arguments) else None
    if cached is not None and (cached / "root").is_dir():
        _replace_tree(cached / "root", state.root)
        return
    # A step_env value naming a host file (a model to bake) is handed in read-only at a path of its
    # own: the host path itself may lie under a folder the image shadows (a checkout under /tmp).
    inputs = {f"{STEP_INPUTS}/{name}": Path(value) for name, value in step_env.items() if Path(value).is_file()}
    env = {
        **{name: os.environ[name] for name in CONNECTION_VARIABLES if name in os.environ},
        "HOME": "/root",  # Docker's default for a RUN as root
        **state.variables,
        **step_env,
        **{target.rsplit("/", 1)[1]: target for target in inputs},
    }
    result = subprocess.run(
        [*sandbox_args(state.root, python_home, state.workdir, env, inputs=inputs), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"{instruction}\nexited with {result.returncode}:\n{result.stdout[-6000:]}")
    if cached is not None:
        _store(state.root, cached)


def _only_pinned_installs(command: str) -> bool:
    """Whether a RUN's downloads are all hash-pinned pip installs, so that its inputs decide its
    outcome: it pins with --require-hashes and runs no project code (the model step's
    `python -m handler.core.bake` fetches from the hub, so it must run every time)."""
    steps = [step.strip() for step in re.split(r"&&|;|\|\|", command) if step.strip()]
    programs = [next((word for word in step.split() if "=" not in word), "") for step in steps]  # after VAR=value
    return HASH_PINNED in command and not any(program in ("python", "python3") for program in programs)


def sandbox_args(
    root: Path,
    python_home: Path,
    workdir: str,
    env: Mapping[str, str],
    *,
    writable: Sequence[str] = IMAGE_DIRS,
    overrides: Mapping[str, Path] | None = None,
    network: bool = True,
    inputs: Mapping[str, Path] | None = None,
) -> list[str]:
    """bwrap's command line: the image's folders from `root`, the interpreter, the host read-only.

    A build step gets every image folder writable; a run of the finished image (Lambda) may pass
    writable=("/tmp",) and a fresh /tmp in `overrides`, and network=False to prove it needs none.
    """
    targets: dict[str, tuple[Path, bool]] = {
        folder: ((overrides or {}).get(folder, root / folder.lstrip("/")), folder in writable) for folder in IMAGE_DIRS
    }
    targets[PYTHON_HOME] = (python_home, False)
    targets.update({target: (source, False) for target, source in (inputs or {}).items()})
    args = [
        "bwrap",
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        *([] if network else ["--unshare-net"]),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    args += _host_mounts("/", targets)
    for target, (source, rw) in sorted(targets.items()):
        args += ["--bind" if rw else "--ro-bind", str(source), target]
    for path in PIP_CONFIG_PATHS:
        if os.path.isdir(path):
            args += ["--tmpfs", path]
        elif os.path.lexists(path):
            args += ["--ro-bind", "/dev/null", path]
    args += ["--chdir", workdir, "--clearenv"]
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    return args


def _host_mounts(folder: str, targets: Mapping[str, object]) -> list[str]:
    """Read-only binds of the host's entries in `folder`, leaving room for the image's targets."""
    args: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = posixpath.join(folder, entry.name)
        if path in ("/proc", "/dev") or path in targets:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(path), path]
        elif any(target.startswith(path + "/") for target in targets):
            # A host folder that holds an image folder: rebuilt entry by entry around it.
            args += ["--dir", path, *_host_mounts(path, targets)]
        else:
            args += ["--ro-bind", path, path]
    return args


def _store(root: Path, cached: Path) -> None:
    partial = cached.with_name(cached.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shutil.copytree(root, partial / "root", symlinks=True)
    partial.replace(cached)  # atomic: a build never restores half a layer


def _replace_tree(source: Path, root: Path) -> None:
    for child in root.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    shutil.copytree(source, root, symlinks=True, dirs_exist_ok=True)


def clean_python_name() -> str:
    """The clean interpreter's folder name: this machine's Python, which every layer's key includes."""
    return f"{platform.python_version()}-{hashlib.sha256(sys.base_prefix.encode()).hexdigest()[:12]}"


def clean_python(home: Path) -> Path:
    """A Python prefix holding this machine's interpreter, its standard library and pip, nothing else.

    It stands in for the base image's /var/lang, and is mounted there: a copy rather than a venv,
    because a venv points back into the host's installation (pyenv's lives under /root, which is
    the image's own folder in a build). A shared libpython is copied to lib/, where the base
    image's LD_LIBRARY_PATH (/var/lang/lib first) finds it.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    prefix = home / clean_python_name()
    done = prefix / ".complete"
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock"):
        if done.exists():
            return prefix
        shutil.rmtree(prefix, ignore_errors=True)
        (prefix / "bin").mkdir(parents=True)
        shutil.copy2(base / "bin" / version, prefix / "bin" / version)
        for alias in ("python3", "python"):
            (prefix / "bin" / alias).symlink_to(version)
        stdlib = base / "lib" / version

        def _not_ours(folder: str, names: list[str]) -> set[str]:
            # Installed packages and the stdlib's own test suite (120 MB) are no part of a clean base.
            return {"site-packages", "dist-packages", "test"} & set(names) if Path(folder) == stdlib else set()

        shutil.copytree(stdlib, prefix / "lib" / version, symlinks=True, ignore=_not_ours)
        (prefix / "lib" / version / "site-packages").mkdir()
        for library in (base / "lib").glob("libpython3*.so*"):
            shutil.copy2(library, prefix / "lib" / library.name)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PIP_CONFIG_FILE": os.devnull,
            "LD_LIBRARY_PATH": str(prefix / "lib"),
        }
        python = str(prefix / "bin" / version)
        subprocess.run([python, "-m", "ensurepip", "--default-pip"], check=True, env=env, stdout=subprocess.DEVNULL)
        # Python 3.11's ensurepip adds setuptools, which the base image's Python 3.12 does not have.
        subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools"], check=True, env=env)
        done.touch()
    return prefix


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
