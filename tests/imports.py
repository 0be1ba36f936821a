"""The package's imports, read from the syntax of its modules (nothing is imported): what the layout
test and the Dockerfile's model step are checked against. A lazy import inside a function counts
as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` imports, relative imports resolved against `package`."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            modules.add(module)
            # `from handler import aws` names the subpackage as an imported name.
            modules.update(f"{module}.{alias.name}" for alias in node.names)
    return modules


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parts[:-1])


def module_file(name: str) -> Path | None:
    """The checkout's file for a module of ours (a module or a package's __init__), else None."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_closure(entry: Path) -> set[Path]:
    """Every file of ours that running `entry` may import: its imports, theirs, and the __init__ of
    each package on the way (Python runs those first)."""
    reached: set[Path] = set()
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in reached:
            continue
        reached.add(path)
        names = imported_modules(path.read_text(), package_of(path))
        names.add(module_name(path))
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:depth]))
                if found is not None and found not in reached:
                    pending.append(found)
    return reached
