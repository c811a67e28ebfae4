"""Regenerate the docs' tables and figures from the bundles committed under results/ (what `make docs` runs).

    python scripts/make_docs.py
writes results/NAME/summary.md, docs/results.md, the README's results blocks and docs/NAME-*.png, and, where
Chromium is installed, docs/report-screenshot.png: the top of the quick bundle's report as a browser shows it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # screenshot_report.py beside this script

from PIL import Image  # noqa: E402
from screenshot_report import screenshot  # noqa: E402

from safepref.report import write_report  # noqa: E402
from safepref.report.docs import write_docs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "report-screenshot.png"


def report_screenshot(bundle: Path) -> Path | None:
    """The first 1,500 pixels of the bundle's report at 1,200 wide, scaled to 900 and reduced to 64 colours (a
    readable picture at about a tenth of the full page's bytes); None where no Chromium is installed."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return None
    with tempfile.TemporaryDirectory() as folder:
        paths = write_report(bundle, Path(folder))
        full = screenshot(Path(paths["report"]), Path(folder) / "report.png")
        image = Image.open(full).convert("RGB").crop((0, 0, 1200, 1500)).resize((900, 1125))
        image.quantize(colors=64).save(SCREENSHOT, optimize=True)
    return SCREENSHOT


if __name__ == "__main__":
    for path in write_docs(ROOT):
        print(f"wrote {path}")
    shot = report_screenshot(ROOT / "results" / "quick")
    print(f"wrote {shot}" if shot else "no chromium: docs/report-screenshot.png left as it is")
