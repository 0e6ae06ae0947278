"""Regenerate docs/report.png, the README's picture of the report: `python tests/make_docs_screenshot.py`.

The page is the one tests/test_report_html.py checks: the test fixture's runs (made-up figures, written with
the project's own writers, telemetry reduced from synthetic samples) gathered with `--html`. Headless Chromium
(tests/headless_chromium.py) renders it at 1280 px; the top of the page is kept, its colours reduced to a
palette so the file stays small (< 300 KB).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.gather import gather  # noqa: E402
from tests.headless_chromium import Browser  # noqa: E402
from tests.test_report_html import make_runs  # noqa: E402


def main(out: Path = ROOT / "docs" / "report.png") -> Path:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep, old = make_runs(root)
        db = root / "history.sqlite"
        gather([old], db=db)
        html = root / "report.html"
        subprocess.run(
            [sys.executable, "-m", "launcher.gather", str(sweep), "--html", str(html), "--db", str(db)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        with Browser() as b:
            page = b.open(html, width=1280, height=900)
            # the path of a temporary directory says nothing: the sources line names the fixture instead
            page.evaluate("document.querySelector('.sub code').textContent = 'tests/test_report_html.py (fixture)'")
            shot = page.screenshot(root / "full.png", max_height=1500)
        img = Image.open(shot).convert("RGB")
        img = img.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return out


if __name__ == "__main__":
    main()
