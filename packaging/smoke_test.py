"""Smoke-test a built bundle: --version, then the offscreen window scanning a generated folder
with a local random-weight model, exiting cleanly.

    python packaging/smoke_test.py dist/nsfw-desk/nsfw-desk
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main(executable: str) -> int:
    from nsfw_desk import __version__
    from nsfw_desk.synthetic import save_random_model, write_photo

    out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and __version__ in out.stdout, out
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(6):
            write_photo(tmp / "photos" / f"{i}.jpg", (320, 240), seed=i)
        model = save_random_model(tmp / "model")
        env = {
            **os.environ,
            "QT_QPA_PLATFORM": "offscreen",
            "XDG_CONFIG_HOME": str(tmp / "c"),
            "XDG_DATA_HOME": str(tmp / "d"),
            "XDG_CACHE_HOME": str(tmp / "k"),
            "XDG_STATE_HOME": str(tmp / "s"),
            "HF_HUB_OFFLINE": "1",
        }
        scan = subprocess.run(
            [
                executable,
                "scan",
                str(tmp / "photos"),
                "--model",
                str(model),
                "--db",
                str(tmp / "lib.sqlite"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert scan.returncode == 0 and "6 scored" in scan.stderr, scan
        window = subprocess.run(
            [
                executable,
                str(tmp / "photos"),
                "--model",
                str(model),
                "--db",
                str(tmp / "lib.sqlite"),
                "--quit-after-paint",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert window.returncode == 0 and "first paint" in window.stdout, window
    print(f"smoke test passed: {out.stdout.strip()}; {scan.stderr.strip().splitlines()[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
