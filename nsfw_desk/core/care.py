"""Care for the reviewer: what a day of review exposed them to, and when to take a break.

Per reviewer and local calendar day the library keeps: images revealed unblurred (count and
total seconds), flagged items decided, and the time spent reviewing. They stay in the
library on this machine (owner-only, like the rest of it); `nsfw-desk merge` carries them
only with `--include-care-stats`.

`ReviewClock` is the whole of the timekeeping, without Qt, so tests drive it with their own
clock: review activity (a decision, a move, a reveal) less than IDLE_GAP_S after the last
counts the time between as reviewing; a longer pause is not counted and starts a new
stretch. A stretch of continuous review longer than the break interval makes a break due,
until the reviewer acknowledges it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

IDLE_GAP_S = 5 * 60  # a longer pause is not reviewing, and ends a stretch
DEFAULT_BREAK_MINUTES = 25


def today(now: datetime | None = None) -> str:
    """The local calendar day, YYYY-MM-DD: the reviewer's day, not UTC's."""
    return (now or datetime.now()).date().isoformat()


@dataclass
class CareDay:
    """One reviewer's day."""

    reviewer: str
    day: str
    reveals: int = 0
    reveal_ms: int = 0
    flagged_reviewed: int = 0
    review_ms: int = 0

    def add(self, other: CareDay) -> CareDay:
        return CareDay(
            self.reviewer,
            self.day,
            self.reveals + other.reveals,
            self.reveal_ms + other.reveal_ms,
            self.flagged_reviewed + other.flagged_reviewed,
            self.review_ms + other.review_ms,
        )

    @property
    def empty(self) -> bool:
        return not (self.reveals or self.reveal_ms or self.flagged_reviewed or self.review_ms)


def reveal_refusal(revealed_today: int, cap: int) -> str | None:
    """Why a reveal is refused now (the day's cap is reached), or None when it may go on."""
    if cap <= 0 or revealed_today < cap:
        return None
    return (
        f"Reveal refused: {revealed_today:,} of {cap:,} reveals today, the daily cap in "
        "Settings. Images stay blurred until tomorrow (or raise the cap in Settings)."
    )


def format_duration(ms: int) -> str:
    seconds = max(0, int(ms) // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


class ReviewClock:
    """Continuous-review time and the break reminder, on a clock the caller gives."""

    def __init__(
        self,
        break_after_s: float = DEFAULT_BREAK_MINUTES * 60,
        *,
        clock: Callable[[], float],
        idle_gap_s: float = IDLE_GAP_S,
    ) -> None:
        self.break_after_s = break_after_s
        self.idle_gap_s = idle_gap_s
        self.clock = clock
        self._last: float | None = None
        self._stretch_start: float | None = None
        self.break_due = False

    def activity(self) -> int:
        """Note review activity now; return the milliseconds of review time it adds."""
        now = self.clock()
        added = 0
        if self._last is None or now - self._last > self.idle_gap_s:
            self._stretch_start = now  # a pause long enough is a break already
            self.break_due = False
        else:
            added = round((now - self._last) * 1000)
        self._last = now
        self.check()
        return added

    def check(self) -> bool:
        """Whether a break is due now (the stretch is long and still going)."""
        if self._stretch_start is None or self._last is None:
            return False
        now = self.clock()
        if now - self._last > self.idle_gap_s:
            self._stretch_start = None  # paused long enough: the stretch is over
            return False
        if now - self._stretch_start >= self.break_after_s:
            self.break_due = True
        return self.break_due

    def stretch_s(self) -> float:
        """How long the current stretch of continuous review has lasted."""
        if self._stretch_start is None:
            return 0.0
        return max(0.0, self.clock() - self._stretch_start)

    def acknowledge(self) -> None:
        """The reviewer saw the reminder: the next stretch starts with their next activity."""
        self.break_due = False
        self._stretch_start = None
        self._last = None


def care_day_of(rows: list[tuple], reviewer: str, day: str) -> CareDay:
    """The CareDay of `Library.care_totals` rows for that reviewer and day (zeros if none)."""
    for r, d, reveals, reveal_ms, flagged, review_ms in rows:
        if r == reviewer and d == day:
            return CareDay(r, d, int(reveals), int(reveal_ms), int(flagged), int(review_ms))
    return CareDay(reviewer, day)
