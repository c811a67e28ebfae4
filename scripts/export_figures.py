"""Save the figures embedded in a run's report.html as PNG files (for the README or a paper draft).

    python scripts/export_figures.py runs/default docs/default
writes docs/default-1-asr-advbench-none.png, ... one file per embedded image, named by its order and alt text.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)">')


def export_figures(run_dir: Path, prefix: Path) -> list[Path]:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (alt, data) in enumerate(IMAGE.findall(page), start=1):
        slug = re.sub(r"[^a-z0-9]+", "-", alt.lower()).strip("-")
        path = prefix.parent / f"{prefix.name}-{index}-{slug}.png"
        path.write_bytes(base64.b64decode(data))
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/export_figures.py RUN_DIR OUT_PREFIX")
    for written_path in export_figures(Path(sys.argv[1]), Path(sys.argv[2])):
        print(written_path)
