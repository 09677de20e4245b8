"""The core is Qt-free: importing every core module must not import PySide6 (or torch)."""

import pkgutil
import subprocess
import sys

import nsfw_desk.core


def test_core_modules_do_not_import_qt_or_torch():
    modules = [m.name for m in pkgutil.walk_packages(nsfw_desk.core.__path__, "nsfw_desk.core.")]
    assert {
        "nsfw_desk.core.hub",
        "nsfw_desk.core.runtime",
        "nsfw_desk.core.scan",
        "nsfw_desk.core.store",
        "nsfw_desk.core.images",
    } <= set(modules)
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in modules)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6'))\n"
        + "print('QT:' + ','.join(bad))\n"
        + "print('TORCH:' + str('torch' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "QT:\n" in out.stdout, out.stdout
    # torch is imported lazily, inside the functions that need it, so that the
    # desk window can paint before torch has loaded.
    assert "TORCH:False" in out.stdout, out.stdout
