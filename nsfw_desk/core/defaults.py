"""The app's defaults in one place: what a setting, an option or a dialog starts from.

Measured values say where they were measured; change a number here, not at its users.
"""

from __future__ import annotations

# Scanning
BATCH_SIZE = 8  # `nsfw-desk bench` on a 2-core CPU: 4, 8, 16 within noise; 8 cancels < 1 s
GPU_DECODE_CHOICES = ("auto", "on", "off")  # JPEGs decoded on the model's device: auto = CUDA
# On CUDA. python -m nsfw_desk.bench_gpu on an H100, 1024-px JPEGs decoded on the GPU, images/s
# (medians of 4-7 runs, each ±10%): batches of 128 1,404, 256 1,380, 384 1,434, 512 1,214 (once).
# The smallest of equals: less GPU memory, earlier results in the desk, a quicker cancel.
CUDA_BATCH_SIZE = 128
DECODE_NICENESS = 10  # decode threads yield to torch's threads (see core/scan.py)
RESULT_CHUNK = 2000  # stored results sent to a listener in slices of this many

# Review and calibration
THRESHOLD = 0.5  # the model's unsafe probability at which an item is flagged
TARGET_RECALL = 0.95  # the recall a suggested threshold must reach
MIN_PER_CLASS = 10  # reviewed items of each class before metrics mean anything

# Export
VAL_FRACTION = 0.2  # share of each class that goes to the validation split

# The library
BUSY_TIMEOUT_MS = 15_000  # how long a write waits for another connection's lock

# Progress reports: at most this often, so a fast loop does not flood its listener
PROGRESS_INTERVAL_S = 0.1
CLI_PROGRESS_INTERVAL_S = 0.2
