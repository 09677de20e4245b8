"""The strip above the grid that says whose scores the grid shows, and switches them.

The models listed are those the library has scores for in the open folder; a model trained
here (its folder holds a training.json) says its base and date. Switching shows the chosen
model's stored scores at once, without a scan: items it never scored say "no score", and
"Scan again" scores them with it. "Compare with" picks the model the "Models disagree"
filter compares the shown one against; both scores are then on each tile.

Listing reads the library and the model folders' training.json, so it runs on the library's
read thread (`read_model_choices`), never on the GUI thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy

from nsfw_desk.gui.combos import fit_popup, narrow_combo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """One model the switcher offers."""

    model_id: str
    name: str
    spec: str | None  # what loads it again (hub id@revision or folder); None: unknown
    scored: int  # files of the open folder it has scores for
    base_name: str | None = None  # trained here: the model it was trained from
    trained_at: str | None = None  # trained here: when (UTC ISO)
    mode: str | None = None  # trained here: head / partial / full

    @property
    def trained(self) -> bool:
        return self.trained_at is not None or self.base_name is not None

    def title(self) -> str:
        """How the combo box lists it: the name, and for a trained model its base and date."""
        if not self.trained:
            return self.name
        date = (self.trained_at or "")[:10]
        base = (self.base_name or "an unknown base").split(" (sha256:")[0]
        mode = f", {self.mode}" if self.mode else ""
        return f"{self.name} — trained from {base}{mode}" + (f", {date}" if date else "")


def training_facts(source: str | None) -> dict | None:
    """A local model folder's training.json, or None (not a folder, none there, unreadable)."""
    if not source:
        return None
    path = Path(source) / "training.json"
    try:
        if not path.is_file():
            return None
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.debug("could not read %s: %s", path, exc)
        return None
    return facts if isinstance(facts, dict) else None


def read_model_choices(library, folder: Path) -> list[ModelChoice]:
    """The models with scores under `folder` (read thread: SQLite and model folders)."""
    rows = library.models_scored_under(folder)
    facts = {row["id"]: training_facts(row["source"]) for row in rows}
    bases = {str(f["base_model_id"]) for f in facts.values() if f and f.get("base_model_id")}
    base_names = library.model_names(bases) if bases else {}
    choices = []
    for row in rows:
        spec = row["source"]
        if spec and row["revision"]:
            spec = f"{spec}@{row['revision']}"
        fact = facts[row["id"]] or {}
        base = fact.get("base_model_id")
        choices.append(
            ModelChoice(
                row["id"],
                row["name"],
                spec,
                row["scored"],
                base_name=base_names.get(str(base), str(base)) if base else None,
                trained_at=str(fact["trained_at"]) if fact.get("trained_at") else None,
                mode=str(fact["mode"]) if fact.get("mode") else None,
            )
        )
    return choices


class ModelSwitcher(QFrame):
    """Scores from: [model ▾] · what it covers · [Scan again] · Compare with: [model ▾]."""

    model_chosen = Signal(str)  # model id
    compare_chosen = Signal(object)  # model id or None
    scan_again = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("modelSwitcher")
        self.choices: dict[str, ModelChoice] = {}
        self._busy = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        layout.addWidget(QLabel("Scores from"))
        self.model_box = narrow_combo(34)
        self.model_box.setToolTip(
            "The models this library has scores for in this folder; switching shows their "
            "stored scores without scanning"
        )
        self.model_box.activated.connect(self._on_model_activated)
        layout.addWidget(self.model_box)
        self.coverage = QLabel()
        self.coverage.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.coverage, 1)
        self.scan_button = QPushButton("Scan again")
        self.scan_button.setToolTip("Score the items this model has no score for yet")
        self.scan_button.clicked.connect(self.scan_again)
        layout.addWidget(self.scan_button)
        layout.addWidget(QLabel("Compare with"))
        self.compare_box = narrow_combo(24)
        self.compare_box.setToolTip(
            "The model 'Models disagree' compares the shown scores with; its score is shown "
            "on each tile after the shown one"
        )
        self.compare_box.activated.connect(
            lambda i: self.compare_chosen.emit(self.compare_box.itemData(i))
        )
        layout.addWidget(self.compare_box)
        for widget in (self.model_box, self.compare_box, self.scan_button):
            widget.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # keys stay with the grid
        self.scan_button.hide()
        self.hide()

    def set_choices(
        self,
        choices: list[ModelChoice],
        active: str | None,
        compare: str | None,
        active_name: str | None = None,
    ) -> None:
        """List `choices` (the active model first if it has no scores here yet)."""
        self.choices = {c.model_id: c for c in choices}
        for box in (self.model_box, self.compare_box):
            box.blockSignals(True)
            box.clear()
        if active and active not in self.choices:
            name = active_name or active[:15]
            self.model_box.addItem(f"{name} ({self._unscored_note()})", active)
        for choice in choices:
            self.model_box.addItem(choice.title(), choice.model_id)
            self.model_box.setItemData(
                self.model_box.count() - 1,
                f"{choice.name}: {choice.scored:,} files scored in this folder",
                Qt.ItemDataRole.ToolTipRole,
            )
        self.compare_box.addItem("(none)", None)
        for choice in choices:
            if choice.model_id != active:
                self.compare_box.addItem(choice.title(), choice.model_id)
        self._select(self.model_box, active)
        self._select(self.compare_box, compare)
        for box in (self.model_box, self.compare_box):
            box.blockSignals(False)
            fit_popup(box)
        self.compare_box.setEnabled(self.compare_box.count() > 1)
        self.setVisible(bool(choices) or active is not None)

    def compare_model(self) -> str | None:
        return self.compare_box.currentData()

    def set_coverage(self, unscored: int, total: int, unscanned: int = 0) -> None:
        """Say how much of the folder the shown model has scored; offer to score the rest.

        `unscanned`: files a stopped scan never reached, which the grid does not list yet
        (without it, a stop read "all 240 images scored" in a folder of 400)."""
        if total == 0 and not unscanned:
            self.coverage.setText("")
            self.scan_button.hide()
            return
        if unscanned:
            self.coverage.setText(
                f"  {total - unscored:,} images scored · the scan stopped before "
                f"{unscanned:,} more files"
            )
        elif unscored:
            self.coverage.setText(
                f"  {unscored:,} of {total:,} images have no score from this model"
            )
        else:
            self.coverage.setText(f"  all {total:,} images scored")
        self.scan_button.setVisible(unscored > 0 or unscanned > 0)

    def set_busy(self, busy: bool) -> None:
        """While a scan runs the choice waits (the scan decides which model it scores with)."""
        self._busy = busy
        self.model_box.setEnabled(not busy)
        if self.model_box.count() and self.model_box.itemData(0) not in self.choices:
            name = self.model_box.itemText(0).rsplit(" (", 1)[0]
            self.model_box.setItemText(0, f"{name} ({self._unscored_note()})")
        self.scan_button.setEnabled(not busy)

    def _unscored_note(self) -> str:
        """After the name of a model with no stored scores in this folder: while the folder's
        first scan runs, its scores are arriving on the tiles ("all 176 images scored")."""
        return "scanning…" if self._busy else "no scores here yet"

    def _on_model_activated(self, index: int) -> None:
        model_id = self.model_box.itemData(index)
        if model_id:
            self.model_chosen.emit(model_id)

    @staticmethod
    def _select(box: QComboBox, model_id: str | None) -> None:
        index = box.findData(model_id)
        box.setCurrentIndex(max(0, index))
