"""Regenerate the docs' tables and figures from the bundles committed under results/ (what `make docs` runs).

    python scripts/make_docs.py
writes results/NAME/summary.md, docs/results.md, the README's results blocks and docs/NAME-*.png.
"""

from __future__ import annotations

from pathlib import Path

from safepref.report.docs import write_docs

if __name__ == "__main__":
    for path in write_docs(Path(__file__).resolve().parents[1]):
        print(f"wrote {path}")
