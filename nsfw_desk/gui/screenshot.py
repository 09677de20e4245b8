"""Make a screenshot of the desk on a scanned folder of generated images.

    python -m nsfw_desk.gui.screenshot docs/screenshot.png

Everything is generated (pictures, a random-weight model, a throw-away library), so the
picture shows the real window and real code paths without any real, sensitive image.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def make_demo_folder(root: Path, count: int = 36) -> Path:
    from nsfw_desk.synthetic import write_photo

    for i in range(count):
        sub = root / ("uploads" if i % 3 else "uploads/archive")
        write_photo(sub / f"IMG_{4100 + i}.jpg", (640 + (i % 5) * 80, 480), seed=i * 31)
    (root / "uploads" / "corrupt_upload.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def main(argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = Path(argv[0] if argv else "docs/screenshot.png")
    from PySide6.QtWidgets import QApplication

    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.main_window import MainWindow
    from nsfw_desk.synthetic import save_random_model

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-shot-") as tmp:
        tmp = Path(tmp)
        folder = make_demo_folder(tmp / "demo")
        model = save_random_model(tmp / "model", seed=3)
        window = MainWindow(
            Settings(threshold=0.6, reviewer="demo"),
            library_path=tmp / "library.sqlite",
            model=str(model),
            save_settings=False,
        )
        window.resize(1400, 860)
        window.show()
        window.open_folder(folder / "uploads")
        deadline = time.monotonic() + 120
        while (window.scanning or window.results.rowCount() == 0) and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        window._select_row(1)
        window.decide("unsafe")
        window.decide("safe")
        window._select_row(3)
        for _ in range(50):  # let thumbnails load and paint
            window.thumbnails.wait_idle(100)
            app.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(out))
        window.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
