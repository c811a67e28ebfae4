"""Versions of the libraries a result depends on, recorded in every results file (and in cache keys)."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_versions(*packages: str) -> dict[str, str]:
    """Python's version and each installed package's (packages that are not installed are left out)."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


@cache
def code_version() -> dict[str, str | None]:
    """What computed a result: safepref's version and, in a git checkout, its commit (``-dirty`` with uncommitted
    changes), so a report can say which of its rows came from which code."""
    package = Path(__file__).resolve().parents[1]
    commit = None
    try:
        head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            status = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--untracked-files=no",
                                     "--", "."], capture_output=True, text=True, timeout=30)
            commit = head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"safepref": package_versions("safepref").get("safepref"), "commit": commit}
