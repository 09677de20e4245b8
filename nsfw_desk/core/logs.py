"""What the logs may hold: no image content, and no path above debug level.

Paths name people's files; a log travels with bug reports. An unexpected exception's
message often holds a path (OSError, Pillow's errors), so above debug the log gets its type
and where in our code it happened, and the message goes to debug.
"""

from __future__ import annotations

import logging
import traceback


def log_unexpected(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a failure nobody expected: type and frames at ERROR, the message at DEBUG."""
    frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    log.error("%s: %s (message at debug level)\n%s", what, type(exc).__name__, frames)
    log.debug("%s: %s: %s", what, type(exc).__name__, exc)


def log_problem(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an expected problem (a file we could not read or write): its kind at WARNING."""
    log.warning("%s: %s (details at debug level)", what, type(exc).__name__)
    log.debug("%s: %s", what, exc)
