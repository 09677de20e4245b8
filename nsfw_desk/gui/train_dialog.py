"""Review → "Train from my decisions…": train a model here, watch it, compare it, use it.

The run is `core.training.train` on a TrainWorker thread (gui/train_worker.py), the scan's
pattern: progress by queued signal (epoch, step, loss, validation accuracy, time left), Stop
sets a flag, Resume continues from the checkpoint Stop (or a crash) left. A problem with the
decisions (too few of a class, …) is shown here in the trainer's own words. On success the
before/after report is a table, and the window makes the new model the one it shows and
offers the review queue: the unreviewed items the new model is least sure about.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from nsfw_desk.gui import file_dialogs
from nsfw_desk.gui.train_worker import TrainWorker
from nsfw_desk.gui.worker import TaskThread

MODES = {
    "head": "Head only — fast: a new head on the embeddings the scans stored",
    "partial": "Partial — also fine-tune the last blocks (decodes the images)",
    "full": "Full — fine-tune everything (slow; best on a GPU)",
}
PHASES = {
    "preparing": "Preparing",
    "embeddings": "Computing missing embeddings",
    "training": "Training",
    "evaluating": "Evaluating on the held-out split",
    "writing": "Writing the model folder",
    "rescoring": "Scoring the library with the new model",
}
# The report's metrics, in the order and words the table shows them.
METRICS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
    "confusion.tp": "True positives (unsafe flagged)",
    "confusion.fp": "False positives (safe flagged)",
    "confusion.tn": "True negatives",
    "confusion.fn": "False negatives (unsafe missed)",
    "threshold_for_target_recall": "Threshold for the target recall",
}
_BEFORE_KEYS = ("before", "base", "baseline")
_AFTER_KEYS = ("after", "new", "trained")


def default_out(models_dir: Path, base_name: str, when: datetime | None = None) -> Path:
    """`models_dir/<base>-trained-<date>`, one generation deep and never a taken name
    (core/training/naming.py, as the command line names it)."""
    from nsfw_desk.core.training.naming import default_model_dir

    return default_model_dir(models_dir, base_name, when)


def format_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _flatten(metrics: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def report_table(report: dict) -> list[tuple[str, object, object]]:
    """(metric, base model's value, new model's value) rows from a report.json dict."""
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else report
    before = next((metrics[k] for k in _BEFORE_KEYS if isinstance(metrics.get(k), dict)), {})
    after = next((metrics[k] for k in _AFTER_KEYS if isinstance(metrics.get(k), dict)), {})
    flat_before, flat_after = _flatten(before), _flatten(after)
    keys = [k for k in METRICS if k in flat_before or k in flat_after]
    target = metrics.get("target_recall")
    return [
        (
            f"Threshold for recall {target:g}"
            if k == "threshold_for_target_recall" and isinstance(target, int | float)
            else METRICS[k],
            flat_before.get(k),
            flat_after.get(k),
        )
        for k in keys
    ]


def report_caption(report: dict) -> str:
    """What the report measured: the held-out split and the threshold."""
    before = report.get("before") if isinstance(report.get("before"), dict) else {}
    if not before or "n" not in before:
        return "Before (base model) and after (new model), on the held-out split"
    threshold = report.get("threshold", before.get("threshold"))
    at = f" at threshold {threshold:g}" if isinstance(threshold, int | float) else ""
    return (
        f"Held-out split: {before['n']:,} items ({before.get('n_unsafe', 0):,} unsafe, "
        f"{before.get('n_safe', 0):,} safe), never trained on; metrics{at}"
    )


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class TrainDialog(QDialog):
    train_requested = Signal(object)  # TrainOptions, queued to the worker
    check_requested = Signal(object)  # an out folder: can a run there be resumed?
    model_trained = Signal(object)  # TrainResult: the window makes it the shown model
    review_requested = Signal()  # the moderator wants the review queue (least sure first)

    def __init__(
        self,
        library_path: Path | None,
        *,
        base_spec: str | None,
        base_name: str,
        models_dir: Path,
        counts: dict[str, int] | None = None,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train from my decisions")
        self.setMinimumWidth(680)
        self.base_spec = base_spec
        self.running = False
        self.result = None
        self._resumable = False
        self._closing = False

        self.task = TaskThread(TrainWorker(library_path), "nsfw-desk-train")
        worker = self.task.worker
        self.train_requested.connect(worker.train, Qt.ConnectionType.QueuedConnection)
        self.check_requested.connect(worker.check, Qt.ConnectionType.QueuedConnection)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.stopped.connect(self._on_stopped)
        worker.failed.connect(self._on_failed)
        worker.checked.connect(self._on_checked)

        self.intro = QLabel(wordWrap=True)
        self.intro.setText(self._intro_text(counts))
        self.base_label = QLabel(base_name)
        self.base_label.setToolTip(base_spec or "the default model")
        self.mode = QComboBox()
        for key, text in MODES.items():
            self.mode.addItem(text, key)
        self.epochs = QSpinBox(minimum=0, maximum=1000, value=0)
        self.epochs.setSpecialValueText("the mode's default")
        self.out = QLineEdit(str(default_out(models_dir, base_name)))
        self.out.editingFinished.connect(self._check_out)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QWidget()
        row = QHBoxLayout(out_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.out, 1)
        row.addWidget(browse)
        self.options = QWidget()
        form = QFormLayout(self.options)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Base model", self.base_label)
        form.addRow("Mode", self.mode)
        form.addRow("Epochs", self.epochs)
        form.addRow("Save the model in", out_row)

        self.phase = QLabel("Not started")
        self.phase.setObjectName("train_phase")
        self.bar = QProgressBar()
        self.bar.setFormat("")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.figures = {name: QLabel("—") for name in ("epoch", "step", "loss", "val", "eta")}
        figures = QWidget()
        grid = QHBoxLayout(figures)
        grid.setContentsMargins(0, 0, 0, 0)
        for key, title in (
            ("epoch", "Epoch"),
            ("step", "Step"),
            ("loss", "Loss"),
            ("val", "Val accuracy"),
            ("eta", "Time left"),
        ):
            grid.addWidget(QLabel(f"<b>{title}</b>"))
            grid.addWidget(self.figures[key])
            grid.addSpacing(12)
        grid.addStretch(1)
        self.line = QLabel()
        self.line.setObjectName("train_line")
        self.line.setWordWrap(True)
        # Two lines kept free: a long message must not squeeze the form when it appears.
        self.line.setMinimumHeight(2 * self.line.fontMetrics().lineSpacing() + 2)
        self.line.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.error = QLabel(wordWrap=True)
        self.error.setObjectName("train_error")
        self.error.setStyleSheet("color: #b00020;")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.caption = QLabel(wordWrap=True)
        self.caption.hide()
        self.report = QTableWidget(0, 3)
        self.report.setHorizontalHeaderLabels(["Held-out split", "Base model", "New model"])
        self.report.verticalHeader().hide()
        self.report.horizontalHeader().setStretchLastSection(True)
        self.report.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.report.hide()
        self.summary = QPlainTextEdit(readOnly=True)
        self.summary.setObjectName("train_summary")
        self.summary.setMaximumHeight(120)
        self.summary.hide()

        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step; the last checkpoint is kept")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue from the checkpoint a stopped run left")
        self.review_button = QPushButton("Review where it is least sure")
        self.review_button.setToolTip(
            "Show the unreviewed items, the new model's scores nearest the threshold first"
        )
        self.close_button = QPushButton("Close")
        self.train_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.stop_button.clicked.connect(self.stop)
        self.review_button.clicked.connect(self._review)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.resume_button, self.stop_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.review_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.options)
        layout.addSpacing(6)
        layout.addWidget(self.phase)
        layout.addWidget(self.bar)
        layout.addWidget(figures)
        layout.addWidget(self.line)
        layout.addWidget(self.error)
        layout.addWidget(self.caption)
        layout.addWidget(self.report, 1)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        self._set_running(False)
        self._check_out()

    # --- starting and stopping ------------------------------------------------------------

    def out_path(self) -> Path:
        return Path(self.out.text().strip()).expanduser()

    def start(self, *, resume: bool = False) -> None:
        from nsfw_desk.core.training import TrainOptions

        if self.running:
            return
        if not self.out.text().strip():
            self._show_error("Choose a folder to save the model in.")
            return
        options = TrainOptions(
            out=self.out_path(),
            base=self.base_spec,
            mode=self.mode.currentData(),
            epochs=self.epochs.value() or None,
            resume=resume,
        )
        self.error.hide()
        self.report.hide()
        self.caption.hide()
        self.summary.hide()
        self.result = None
        for figure in self.figures.values():
            figure.setText("—")
        self.bar.setFormat("")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.phase.setText("Resuming from the checkpoint…" if resume else "Starting…")
        self.line.setText("")
        self._set_running(True)
        self.train_requested.emit(options)

    def stop(self) -> None:
        if self.running:
            self.task.worker.cancel()
            self.stop_button.setEnabled(False)
            self.phase.setText("Stopping after the current step…")

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.options.setEnabled(not running)
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self._resumable)
        self.review_button.setVisible(self.result is not None)
        self.close_button.setText("Stop and close" if running else "Close")

    # --- what the worker says -------------------------------------------------------------

    def _on_progress(self, p) -> None:
        self.phase.setText(PHASES.get(p.phase, p.phase.capitalize()) + "…")
        self.line.setText(p.message)
        if not p.steps:  # a phase line ("evaluating", …): the last figures stay
            return
        self.bar.setFormat("step %v / %m")
        self.bar.setRange(0, p.steps)
        self.bar.setValue(min(p.step, p.steps))
        self.figures["epoch"].setText(f"{p.epoch} / {p.epochs}" if p.epochs else "—")
        self.figures["step"].setText(f"{p.step:,} / {p.steps:,}")
        if p.loss is not None:
            self.figures["loss"].setText(f"{p.loss:.3f}")
        if p.val_accuracy is not None:
            self.figures["val"].setText(f"{p.val_accuracy:.1%}")
        self.figures["eta"].setText(format_eta(p.eta_s))

    def _on_finished(self, result) -> None:
        self.result = result
        self._resumable = False
        self._set_running(False)
        self.phase.setText(f"Done: the new model is in {result.out}")
        self.bar.setValue(self.bar.maximum())
        self._show_report(result.report)
        self.summary.setPlainText(self._summary_text(result))
        self.summary.show()
        self.bar.setFormat("done")
        self.figures["eta"].setText("—")  # early stopping ends before the planned steps
        self.line.setText("")
        self._fit_to_screen()
        self.train_button.setText("Train again")
        self.model_trained.emit(result)
        if self._closing:
            self.reject()

    def _on_stopped(self, message: str) -> None:
        self._set_running(False)
        self.phase.setText("Stopped")
        # The trainer's message says what is kept (a checkpoint Resume continues, or none).
        self.line.setText(message[:1].upper() + message[1:])
        self._check_out()
        if self._closing:
            self.reject()

    def _on_failed(self, kind: str, message: str) -> None:
        self._set_running(False)
        self.phase.setText("Not trained")
        if kind == "unexpected":
            message = (
                f"Training stopped on an unexpected error: {message}\n"
                "The log has the details; please include it in a bug report."
            )
        self._show_error(message)
        self._check_out()
        if self._closing:
            self.reject()

    def _on_checked(self, out: Path, resumable: bool, occupied: bool) -> None:
        if Path(out) != self.out_path() or self.running:
            return  # the folder changed meanwhile
        self._resumable = resumable
        self.resume_button.setEnabled(resumable)
        if resumable:
            self.line.setText(
                "A stopped run for this folder can be continued: Resume picks up from its "
                "last checkpoint, the step count going on (Train starts over)."
            )
        elif occupied and self.result is None:
            self.line.setText(
                f"A model is saved in {out} already: training replaces it (choose another "
                "folder to keep it)."
            )

    # --- showing --------------------------------------------------------------------------

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        self._fit_to_screen()

    def _show_report(self, report: dict) -> None:
        rows = report_table(report or {})
        self.report.setRowCount(len(rows))
        for i, (name, before, after) in enumerate(rows):
            self.report.setItem(i, 0, QTableWidgetItem(name))
            for column, value in ((1, before), (2, after)):
                item = QTableWidgetItem(_cell(value))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.report.setItem(i, column, item)
        self.report.resizeColumnsToContents()
        self.report.resizeRowsToContents()
        header = self.report.horizontalHeader().height()
        whole = header + sum(self.report.rowHeight(i) for i in range(len(rows))) + 4
        self.report.setMinimumHeight(min(whole, 240))  # the rest scrolls on a small screen
        self.report.setVisible(bool(rows))
        self.caption.setText(report_caption(report or {}))
        self.caption.setVisible(bool(rows))

    @staticmethod
    def _summary_text(result) -> str:
        """The trainer's summary without its text table (the dialog shows that as a table)."""
        lines = [
            line
            for line in (result.summary or "").splitlines()
            if line.strip() and not line.startswith(("  ", "Held-out split", "Re-scored"))
        ]
        if result.rescored:
            lines.append(
                f"{result.rescored:,} library items were scored by the new model from their "
                "stored embeddings: no image was decoded. The desk now shows its scores."
            )
        else:
            lines.append(
                "The desk now shows the new model and is scoring the open folder with it "
                "(a scan: this model's backbone changed, so stored embeddings cannot be reused)."
            )
        return "\n".join(lines)

    @staticmethod
    def _intro_text(counts: dict[str, int] | None) -> str:
        text = (
            "Trains a new model from the decisions in this library, starting from the model "
            "the grid shows. A part of the decisions is held out to compare the two models."
        )
        if counts is not None:
            text += (
                f" Decisions now: {counts.get('unsafe', 0):,} unsafe, "
                f"{counts.get('safe', 0):,} safe."
            )
        return text

    def _fit_to_screen(self) -> None:
        """Grow to show the report, within the screen the dialog is on."""
        screen = self.screen().availableGeometry() if self.screen() else None
        want = self.sizeHint().expandedTo(self.size())
        if screen is not None:
            want = want.boundedTo(screen.size() * 0.9)
        self.resize(want)
        if screen is not None and not screen.contains(self.frameGeometry()):
            self.move(screen.center() - self.rect().center())

    def set_counts(self, counts: dict[str, int]) -> None:
        self.intro.setText(self._intro_text(counts))

    # --- the rest -------------------------------------------------------------------------

    def _browse(self) -> None:
        folder = file_dialogs.existing_directory(
            self, "Save the model in", str(self.out_path().parent)
        )
        if folder:
            self.out.setText(folder)
            self._check_out()

    def _check_out(self) -> None:
        self._resumable = False
        self.resume_button.setEnabled(False)
        if not self.running and self.phase.text() == "Not started":
            self.line.setText("")  # what was said about another folder
        if self.out.text().strip():
            self.check_requested.emit(self.out_path())

    def _review(self) -> None:
        self.review_requested.emit()
        self.accept()

    def done(self, result: int) -> None:
        """Closing stops a run (its checkpoint is kept); the dialog closes once it has."""
        if self.running:
            self._closing = True
            self.stop()
            return
        self.task.stop()
        super().done(result)
