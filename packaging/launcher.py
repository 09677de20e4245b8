"""Entry point for the PyInstaller bundle: the same as the `nsfw-desk` console script."""

import multiprocessing
import sys

from nsfw_desk.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
