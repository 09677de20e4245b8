"""Near-duplicate groups in the grid: View → Group near-duplicates (D) collapses each group
to one tile, the first of its files in the grid's order (the highest score under the score
sort), with a "⊞ 7" badge; + (or a click on the badge) expands it, - collapses it again.

Labelling a collapsed tile (U, S, 0) labels every file it stands for: one undoable step,
one decision per content, through the same path as any decision. The counts in the
toolbar stay counts of files, members of collapsed groups included; "left in this view"
counts files too.

The groups come from the grouping task (gui/dupe_tasks.py), run when a folder's stored
results arrive and after each scan; the tiles' ≈N counts come from the same groups.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from PySide6.QtCore import QObject, QPoint

from nsfw_desk.gui.dupe_tasks import DupeTasks, FolderGroups
from nsfw_desk.gui.grid import Role

GROUP_KEY = "D"
EXPAND_KEYS = ("+", "=")
COLLAPSE_KEY = "-"
MATCH_AGAIN_AFTER_S = 2.0  # window activations closer than this ask for no new match


class Grouping(QObject):
    """Owns the grouping and matching tasks and the group actions; the window routes."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.tasks = DupeTasks(window.library_path, self)
        self.tasks.grouped.connect(self._on_grouped)
        self.tasks.matched.connect(self._on_matched)
        self.tasks.said.connect(window._say)
        self._asked_at = 0.0  # when matching was last asked for (time.monotonic)
        bar = window.statusBar()
        for indicator in self.tasks.indicators():
            bar.addPermanentWidget(indicator)

    # --- actions -------------------------------------------------------------------------

    def add_actions(self, menu) -> None:
        w = self.window
        menu.addSeparator()
        self.toggle_action = w._action(
            menu,
            "Group near-&duplicates",
            self.set_grouped,
            [GROUP_KEY],
            checkable=True,
            checked=w.settings.group_near_duplicates,
        )
        w._action(menu, "E&xpand this group", lambda: self.expand_current(True), EXPAND_KEYS)
        w._action(menu, "C&ollapse this group", lambda: self.expand_current(False), [COLLAPSE_KEY])
        w._action(menu, "Expand all groups", lambda: self.expand_all(True))
        w._action(menu, "Collapse all groups", lambda: self.expand_all(False))
        self.refresh_action = w._action(
            menu, "Refresh hash-list &matches", lambda: self.match(force=True)
        )
        if w.settings.group_near_duplicates:
            w.results.grouped = True

    def set_grouped(self, on: bool) -> None:
        w = self.window
        w.settings.group_near_duplicates = on
        w._save_settings()
        if on == w.results.grouped:
            return
        with w._keeping_current():
            w.results.set_grouped(on)
        w._refresh_view_state()
        if not on:
            w._say("Every file shows on its own tile")
            return
        tiles, files = w.results.collapsed_groups()
        if self.tasks.grouping.busy:
            w._say("Grouping near-duplicates: the groups collapse when it is done")
        elif not tiles:
            w._say("No near-duplicate groups in this view")
        else:
            w._say(
                f"{files:,} files in {tiles:,} collapsed groups: labelling a group's tile "
                f"labels them all · + expands, - collapses"
            )

    def expand_current(self, expanded: bool) -> None:
        w = self.window
        index = w.grid.currentIndex()
        group = w.results.group_at(index.row()) if index.isValid() else None
        if group is None:
            w._say("Not a near-duplicate group" + ("" if w.results.grouped else " (D groups them)"))
            return
        self._set_expanded(group, expanded)

    def _set_expanded(self, group: int, expanded: bool) -> None:
        w = self.window
        w._moved = True
        with w._keeping_current():
            w.results.set_expanded(group, expanded)
        w._refresh_view_state()

    def expand_all(self, expanded: bool) -> None:
        w = self.window
        with w._keeping_current():
            w.results.expand_all(expanded)
        w._refresh_view_state()

    def badge_clicked(self, position: QPoint) -> bool:
        """A click on a tile's group badge expands or collapses that group."""
        w = self.window
        index = w.grid.indexAt(position)
        state = index.data(Role.GROUP) if index.isValid() else None
        if state is None:
            return False
        badge = w.delegate.group_badge_rect(w.grid.visualRect(index), state, w.grid.font())
        if not badge.contains(position):
            return False
        group = w.results.group_at(index.row())
        if group is not None:
            self._set_expanded(group, state[1])  # collapsed: expand; expanded: collapse
        return True

    # --- the tasks -----------------------------------------------------------------------

    def group(self, folder: Path | None, *, unless_running: bool = False) -> None:
        """Find the folder's near-duplicate groups (after its stored results or a scan);
        `unless_running`: not when that folder's grouping runs already."""
        task = self.tasks.grouping
        if folder is None or (unless_running and task.running.get(task.serial) == folder):
            return
        self.tasks.group(folder)

    def _on_grouped(self, folder: Path, groups: FolderGroups) -> None:
        w = self.window
        if folder != w.folder:
            return
        # Groups arrive after the results; unless they collapse tiles they only add marks,
        # and the item the moderator is on (or has open in the loupe) stays where it is.
        with w._keeping_current() if w.results.grouped else contextlib.nullcontext():
            w.results.set_near_counts(groups.near)
            w.results.set_groups(groups.hashes, groups.group_of)
        w._refresh_view_state()

    def match(self, *, force: bool = False) -> None:
        """Match the library against the hash lists on the matching thread (cached)."""
        self._asked_at = time.monotonic()
        self.tasks.match(force=force)

    def match_if_changed(self) -> None:
        """The window was activated: lists may have been imported from a terminal."""
        if self.window.folder is None or self.tasks.matching.busy:
            return
        if time.monotonic() - self._asked_at >= MATCH_AGAIN_AFTER_S:
            self.match()

    def _on_matched(self, matches: dict) -> None:
        w = self.window
        if w.folder is None:
            return
        # Matches arrive after the scan; when they only add marks, the item the moderator
        # is on (or has opened in the loupe) must not jump back to the top.
        moving = w.results.list_matches_move_rows()
        with w._keeping_current() if moving else contextlib.nullcontext():
            w.results.set_list_matches(matches)
        w._update_counts()
        w._refresh_view_state()

    def stop(self) -> None:
        self.tasks.stop()
