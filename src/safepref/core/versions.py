"""Versions of the libraries a result depends on, recorded in every results file (and in cache keys)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def package_versions(*packages: str) -> dict[str, str]:
    """Python's version and each installed package's (packages that are not installed are left out)."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
