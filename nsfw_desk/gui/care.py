"""Care for the reviewer in the desk: the day's counters, the reveal cap, the break reminder.

`ReviewerCare` counts what the window reports (reveals and how long they lasted, decisions on
flagged items, review activity), keeps the counters not yet written, and sends them to the
library through `ReviewWrites` in a short while (never on the GUI thread; on close at the
latest). Today's figures from the library are read once on the read thread; the counters
since add to them. The timekeeping is core/care.py's `ReviewClock`, on a clock a test can
replace.

When a stretch of continuous review passes the interval in Settings, the grid dims under a
reminder until the reviewer acknowledges it (the button, or Return); review keys wait
meanwhile. Settings can cap the reveals per day: past the cap a reveal is refused, saying
why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QDockWidget,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from nsfw_desk.core.care import CareDay, ReviewClock, care_day_of, format_duration, reveal_refusal
from nsfw_desk.core.care import today as local_today
from nsfw_desk.gui.library_tasks import Care

if TYPE_CHECKING:
    from nsfw_desk.gui.main_window import MainWindow

TODAY_KEY = "Shift+T"
FLUSH_DELAY_MS = 3000  # counters are written this long after they change (and on close)
CHECK_INTERVAL_MS = 30_000  # how often a running stretch is checked for a due break
# A reveal of the same image again this soon after one ended continues it: a held key's
# auto-repeat reaches some X servers as release and press pairs.
REPEAT_GAP_S = 0.25


def _minutes(minutes: float) -> str:
    whole = max(1, round(minutes))
    return f"{whole} minute{'s' if whole != 1 else ''}"


class BreakOverlay(QWidget):
    """A dimming layer over the grid with the reminder; it stays until acknowledged."""

    acknowledged = Signal()

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("break_reminder")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, False)
        self.text = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.text.setStyleSheet("color: white; font-size: 15pt;")
        self.button = QPushButton("I've had a break — continue (Return)")
        self.button.clicked.connect(self.acknowledged.emit)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.text)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        self.hide()

    def show_reminder(self, minutes: float) -> None:
        self.text.setText(
            f"You have been reviewing for {_minutes(minutes)} without a pause.\n"
            "Look away from the screen, stretch, take a few minutes away from it."
        )
        self.setGeometry(self.parentWidget().rect())
        # Follow the grid's size only while shown: an event filter costs every grid event
        # a trip through Python (and the GIL a scan's threads hold).
        self.parentWidget().installEventFilter(self)
        self.show()
        self.raise_()
        self.button.setFocus(Qt.FocusReason.OtherFocusReason)

    def dismiss(self) -> None:
        self.parentWidget().removeEventFilter(self)
        self.hide()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(10, 12, 16, 215))

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.acknowledged.emit()
            return
        super().keyPressEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.parentWidget().rect())
        return False


class TodayPanel(QDockWidget):
    """Today's figures for the reviewer named in Settings, docked; refreshed while shown."""

    def __init__(self, care: ReviewerCare, parent: QWidget | None = None) -> None:
        super().__init__("Today", parent)
        self.care = care
        self.setObjectName("today_panel")
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        body = QWidget()
        self.setWidget(body)
        self.reveals = QLabel()
        self.reveal_time = QLabel()
        self.flagged = QLabel()
        self.reviewing = QLabel()
        self.stretch = QLabel()
        self.reminder = QLabel()
        form = QFormLayout(body)
        self.heading = QLabel()
        form.addRow(self.heading)
        form.addRow("Revealed unblurred", self.reveals)
        form.addRow("Time revealed", self.reveal_time)
        form.addRow("Flagged items reviewed", self.flagged)
        form.addRow("Time reviewing", self.reviewing)
        form.addRow("Since the last pause", self.stretch)
        form.addRow("Break reminder", self.reminder)
        note = QLabel("Kept in this library on this machine only.")
        note.setStyleSheet("color: gray;")
        form.addRow(note)
        care.changed.connect(self.refresh)

    def refresh(self) -> None:
        if not self.isVisible():
            return
        day = self.care.today()
        settings = self.care.window.settings
        cap = settings.max_reveals_per_day
        self.heading.setText(f"<b>{settings.reviewer}</b> — {day.day}")
        self.reveals.setText(f"{day.reveals:,}" + (f" of {cap:,} allowed" if cap > 0 else ""))
        self.reveal_time.setText(format_duration(day.reveal_ms))
        self.flagged.setText(f"{day.flagged_reviewed:,}")
        self.reviewing.setText(format_duration(day.review_ms))
        minutes = settings.break_minutes
        self.stretch.setText(format_duration(round(self.care.clock.stretch_s() * 1000)))
        self.reminder.setText(f"after {minutes} min" if minutes > 0 else "off (Settings)")


class ReviewerCare(QObject):
    """The day's counters, the reveal cap and the break reminder of one window."""

    changed = Signal()  # the counters moved (the Today panel follows)
    break_shown = Signal()

    def __init__(self, window: MainWindow, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(window)
        self.window = window
        self.clock = ReviewClock(self._break_after_s(), clock=clock)
        self._stored: CareDay | None = None  # today's figures read from the library
        self._pending = CareDay(window.settings.reviewer, local_today())  # not yet written
        self._sent = CareDay(window.settings.reviewer, local_today())  # written since the read
        self._reveal_started: float | None = None
        self._break_showing = False
        self._revealed: str | None = None  # the content revealed now
        self._last_reveal: tuple[str, float] | None = None  # (content, when it ended)
        self._overlay: BreakOverlay | None = None  # made on the first reminder
        self._flush_timer = QTimer(self, singleShot=True, interval=FLUSH_DELAY_MS)
        self._flush_timer.timeout.connect(self.flush)
        self.check_timer = QTimer(self, interval=CHECK_INTERVAL_MS)
        self.check_timer.timeout.connect(self.check)
        self.check_timer.start()
        self.panel: TodayPanel | None = None
        self.load()

    # --- state -----------------------------------------------------------------------

    @property
    def overlay(self) -> BreakOverlay:
        if self._overlay is None:
            self._overlay = BreakOverlay(self.window.grid)
            self._overlay.acknowledged.connect(self.acknowledge)
        return self._overlay

    @property
    def break_showing(self) -> bool:
        return self._break_showing

    def _break_after_s(self) -> float:
        minutes = self.window.settings.break_minutes
        return minutes * 60 if minutes > 0 else float("inf")

    def settings_changed(self) -> None:
        """Settings may name another reviewer or another interval."""
        self.clock.break_after_s = self._break_after_s()
        if self._pending.reviewer != self.window.settings.reviewer:
            self.flush()
            self._roll(local_today())
            self.load()
        self.changed.emit()

    def _roll(self, day: str) -> None:
        """A new day (or reviewer): counters start again."""
        reviewer = self.window.settings.reviewer
        self._stored = None
        self._pending = CareDay(reviewer, day)
        self._sent = CareDay(reviewer, day)

    def _current(self) -> CareDay:
        day = local_today()
        if day != self._pending.day:
            self.flush()
            self._roll(day)
            self.load()
        return self._pending

    def today(self) -> CareDay:
        """Today's figures: the library's, plus what was written or counted since."""
        pending = self._current()
        stored = self._stored or CareDay(pending.reviewer, pending.day)
        return stored.add(self._sent).add(pending)

    def load(self) -> None:
        reviewer, day = self._pending.reviewer, self._pending.day

        def read(library):
            return care_day_of(library.care_totals(reviewer, day), reviewer, day)

        def show(found: CareDay) -> None:
            if (found.reviewer, found.day) == (self._pending.reviewer, self._pending.day):
                self._stored = found
                self._sent = CareDay(found.reviewer, found.day)
                self.changed.emit()

        self.window.reads.query(read, show)

    def _count(self, **added: int) -> None:
        pending = self._current()
        for name, value in added.items():
            setattr(pending, name, getattr(pending, name) + value)
        self._flush_timer.start()
        self.changed.emit()

    def flush(self) -> None:
        """Send the counters not yet written to the library (through the write thread)."""
        self._flush_timer.stop()
        pending = self._pending
        if pending.empty:
            return
        self.window.writes.care(
            Care(
                pending.reviewer,
                pending.day,
                pending.reveals,
                pending.reveal_ms,
                pending.flagged_reviewed,
                pending.review_ms,
            )
        )
        self._sent = self._sent.add(pending)
        self._pending = CareDay(pending.reviewer, pending.day)

    # --- what the window reports -----------------------------------------------------

    def activity(self) -> None:
        """The reviewer did something that is reviewing (a decision, a move, a reveal)."""
        added = self.clock.activity()
        if added:
            self._count(review_ms=added)
        self._show_break_if_due()

    def decided(self, flagged: int) -> None:
        """A decision; `flagged` of its items were flagged when decided."""
        if flagged:
            self._count(flagged_reviewed=flagged)
        self.activity()

    def _continues(self, digest: str | None, now: float) -> bool:
        last = self._last_reveal
        return last is not None and last[0] == digest and now - last[1] < REPEAT_GAP_S

    def may_reveal(self, digest: str | None = None) -> str | None:
        """Why revealing `digest` is refused now (the day's cap), or None."""
        if self._revealed == digest or self._continues(digest, self.clock.clock()):
            return None  # the same reveal going on
        return reveal_refusal(self.today().reveals, self.window.settings.max_reveals_per_day)

    def revealing(self, digest: str | None) -> None:
        """`digest` is revealed from now (None: nothing is); a reveal that ends counts, with
        how long it lasted."""
        now = self.clock.clock()
        if digest is not None and digest == self._revealed:
            return
        if self._reveal_started is not None and self._revealed is not None:
            shown_ms = round((now - self._reveal_started) * 1000)
            self._count(reveals=1, reveal_ms=max(0, shown_ms))
            self._last_reveal = (self._revealed, now)
        self._reveal_started, self._revealed = None, None
        if digest is not None:
            if self._continues(digest, now):
                self._count(reveals=-1)  # the reveal that just ended goes on: one, not two
            self._reveal_started, self._revealed = now, digest
            self.activity()

    # --- the break reminder ----------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        """While the reminder shows, Return or Enter in the grid acknowledges it (and does
        not open the loupe, the key's usual action)."""
        kind = event.type()
        if (
            self._break_showing  # a flag: the overlay may be gone while the grid closes
            and kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            event.accept()
            if kind == QEvent.Type.KeyPress:
                self.acknowledge()
            return True
        return super().eventFilter(watched, event)

    def check(self) -> None:
        if self.clock.check():
            self._show_break_if_due()

    def _show_break_if_due(self) -> None:
        if self.clock.break_due and not self._break_showing:
            self._break_showing = True
            self.window.grid.installEventFilter(self)  # Return acknowledges, while it shows
            self.overlay.show_reminder(self.clock.stretch_s() / 60)
            self.break_shown.emit()

    def acknowledge(self) -> None:
        self.clock.acknowledge()
        self._break_showing = False
        self.window.grid.removeEventFilter(self)
        self.overlay.dismiss()
        self.window.grid.setFocus(Qt.FocusReason.OtherFocusReason)
        self.changed.emit()

    # --- the Today panel ---------------------------------------------------------------

    def show_today(self) -> None:
        """Show the panel (docked at the window's right), or hide it when it shows."""
        if self.panel is None:
            self.panel = TodayPanel(self, self.window)
            self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel)
        elif self.panel.isVisible():
            self.panel.hide()
            return
        self.panel.show()
        self.panel.refresh()
