"""A virtual environment with only this project's dependencies, linked from what this Python has installed.

    python benchmarks/lean_env.py DEST [--extra dev]

A CUDA image's Python carries far more than this project needs (transformers, torchvision, scipy, JAX …),
and ``import torchmetrics``, which Lightning makes at every start, imports some of those whenever they are
installed (``movielens_gnn/startup.py``). What a user gets from the README's install into a fresh virtual
environment is faster to start; where no package index can be reached (the GPU machines), this script
builds such an environment without downloading: a venv at ``DEST`` (no pip) whose site-packages holds
symbolic links to the installed distributions in the closure of ``pyproject.toml``'s dependencies (and the
named extras), and nothing else. The project itself is not linked: put the checkout on ``PYTHONPATH``.
Dependencies that are not installed (wandb on the CUDA images) are skipped and named. Prints the new
Python's path last.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def project_requirements(extras: list[str]) -> list[str]:
    """The requirement strings of ``pyproject.toml``'s dependencies and of the named optional extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"error: pyproject.toml has no optional extras {unknown}; it has {sorted(optional)}")
    return list(project["dependencies"]) + [req for extra in extras for req in optional[extra]]


def closure(requirements: list[str]) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """The installed distributions these requirements need, transitively, and the names not installed.

    Markers are evaluated for this interpreter; a requirement's extras (``jsonargparse[signatures]``) bring
    in the requirements marked with them. Versions are not checked: the environment is what is installed.
    """
    found: dict[str, metadata.Distribution] = {}
    missing: list[str] = []
    seen: set[tuple[str, str]] = set()
    queue = [(Requirement(text), "") for text in requirements]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in found:
            try:
                found[name] = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                if name not in missing:
                    missing.append(name)
                continue
        for wanted in ["", *sorted(requirement.extras)]:
            if (name, wanted) not in seen:
                seen.add((name, wanted))
                queue.extend((Requirement(text), wanted) for text in found[name].requires or [])
    return found, missing


def top_level_paths(dist: metadata.Distribution) -> set[Path]:
    """The files and folders a distribution put directly into its site-packages (its metadata folder too).

    From its RECORD; without one (some system installs), from ``top_level.txt`` and the metadata folder.
    Scripts installed outside (``../../bin``) and shared ``__pycache__`` folders are left out.
    """
    if dist.files is not None:
        names = {file.parts[0] for file in dist.files if file.parts[0] not in ("..", "__pycache__")}
    else:
        modules = (dist.read_text("top_level.txt") or "").split()
        folder = getattr(dist, "_path", None)  # the .dist-info / .egg-info folder (no public accessor)
        names = {*modules, *([Path(folder).name] if folder else [])}
    candidates = {Path(dist.locate_file(name)).absolute() for name in names}  # a relative sys.path entry too
    # A top-level module is a folder or a file (``six.py``, ``_cffi_backend.cpython-312-….so``).
    found = {path for path in candidates if path.exists()}
    for path in candidates - found:
        found |= set(path.parent.glob(path.name + ".py")) | set(path.parent.glob(path.name + ".*.so"))
    return found


def build(dest: Path, dists: dict[str, metadata.Distribution]) -> Path:
    """Create the venv at ``dest`` (replacing one there) and link the distributions into it; return its Python.

    It is built beside ``dest`` and renamed into place when whole, so a build that stops half-way never
    leaves a working ``dest/bin/python`` behind (a venv finds its prefix from its own location).
    """
    partial = dest.with_name(dest.name + ".partial")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(partial)], check=True)
    site = Path(subprocess.run([str(partial / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name, dist in sorted(dists.items()):
        paths = top_level_paths(dist)
        if not paths:
            print(f"warning: {name} names no installed files (no RECORD or top_level.txt); not linked", file=sys.stderr)
        for path in paths:
            link = site / path.name
            if not link.exists():  # namespace folders (nvidia/) are shared: link once
                link.symlink_to(path)
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    return dest / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder for the new environment (emptied first)")
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependencies group to add")
    args = parser.parse_args()
    dists, missing = closure(project_requirements(args.extra))
    python = build(args.dest.resolve(), dists)
    print(f"linked {len(dists)} distributions into {args.dest}" + (f"; not installed, skipped: {', '.join(missing)}"
                                                                  if missing else ""))
    print(python)


if __name__ == "__main__":
    main()
