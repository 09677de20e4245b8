"""The export dialog: choose what to export and where, then watch it being written."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDate, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from nsfw_desk.core import defaults
from nsfw_desk.core.export import ExportOptions, ExportPreview, ExportReport, preview_export
from nsfw_desk.core.progress import Progress
from nsfw_desk.core.units import format_size
from nsfw_desk.gui import file_dialogs
from nsfw_desk.gui.library_tasks import LibraryReads
from nsfw_desk.gui.worker import ExportWorker, TaskThread

PREVIEW_DELAY_MS = 150  # typing a reviewer name asks once, not per key


def _row(*widgets) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


class ExportDialog(QDialog):
    export_requested = Signal(object)  # ExportOptions, queued to the export worker

    def __init__(
        self,
        library_path: Path | None,
        folder: Path | None = None,
        reviewer: str = "",
        parent=None,
        *,
        reads: LibraryReads | None = None,
    ) -> None:
        super().__init__(parent)
        # The preview reads on the window's read thread (or one of its own): never here.
        self._own_reads = reads is None
        self.reads = reads if reads is not None else LibraryReads(library_path, self)
        self.preview: ExportPreview | None = None
        self._preview_serial = 0
        self.setWindowTitle("Export dataset")
        self.setMinimumWidth(620)
        self.report: ExportReport | None = None
        self.folder = folder

        self.out = QLineEdit()
        self.out.setPlaceholderText("A new folder for the dataset")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.only_corrections = QCheckBox("Only corrections (my label differs from the model)")
        self.only_folder = QCheckBox(
            f"Only images in {folder}" if folder else "Only images in the open folder"
        )
        self.only_folder.setEnabled(folder is not None)
        self.reviewer = QLineEdit()
        self.reviewer.setPlaceholderText(
            f"any reviewer (you are {reviewer})" if reviewer else "any reviewer"
        )
        self.use_dates = QCheckBox("Only decisions from")
        self.since = QDateEdit(QDate.currentDate().addMonths(-1), calendarPopup=True)
        self.until = QDateEdit(QDate.currentDate(), calendarPopup=True)
        for edit in (self.since, self.until):
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
            self.use_dates.toggled.connect(edit.setEnabled)
        self.val_fraction = QDoubleSpinBox(
            minimum=0.0, maximum=0.9, singleStep=0.05, decimals=2, value=defaults.VAL_FRACTION
        )
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.link = QCheckBox("Hard links instead of copies, where the disk allows")
        self.overwrite = QCheckBox("Replace the folder if it exists")
        self.source_paths = QCheckBox("Record original file paths in the metadata", checked=True)

        self.preview_label = QLabel("Counting what this export will write…")
        self.preview_label.setObjectName("export_preview")
        # Room for the usual answer ("N images", a train and a val line) from the start: it
        # arrives while the window is being mapped, and a dialog that grows then is placed
        # by some window managers (openbox) at the screen's corner, its title bar off-screen.
        self.preview_label.setMinimumHeight(3 * self.preview_label.fontMetrics().lineSpacing())
        self.preview_label.setToolTip(
            "Counted from your decisions as the options stand. Files that changed or vanished "
            "since review are found, and left out, when the export runs."
        )
        self._preview_timer = QTimer(self, singleShot=True, interval=PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.refresh_preview)

        self.progress = QProgressBar()
        self.progress.hide()
        self.status = QLabel(wordWrap=True)
        self.summary = QPlainTextEdit(readOnly=True)
        self.summary.hide()

        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton(
            "Export", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start)
        self.close_button.clicked.connect(self._close_or_cancel)

        form = QFormLayout(self)
        form.addRow("Export to", _row(self.out, browse))
        form.addRow("", self.only_corrections)
        form.addRow("", self.only_folder)
        form.addRow("Reviewer", self.reviewer)
        form.addRow(self.use_dates, _row(self.since, QLabel("to"), self.until))
        form.addRow("Validation share", self.val_fraction)
        form.addRow("Split seed", self.seed)
        form.addRow("", self.link)
        form.addRow("", self.source_paths)
        form.addRow("", self.overwrite)
        form.addRow("Will write", self.preview_label)
        form.addRow(self.progress)
        form.addRow(self.status)
        form.addRow(self.summary)
        form.addRow(self.buttons)

        self.task = TaskThread(ExportWorker(library_path), "nsfw-desk-export")
        worker = self.task.worker
        self.export_requested.connect(worker.export, Qt.ConnectionType.QueuedConnection)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self.running = False
        for box in (self.only_corrections, self.only_folder, self.use_dates):
            box.toggled.connect(self._preview_later)
        # After an export Export waits for a change: a second click (or Return) would write
        # the same dataset again, or fail on the folder it just wrote.
        self.exported: ExportOptions | None = None
        self._written = ""  # the status line of the last export written
        self._running_options: ExportOptions | None = None
        for box in (self.only_corrections, self.only_folder, self.use_dates, self.link):
            box.toggled.connect(self._options_changed)
        for box in (self.overwrite, self.source_paths):
            box.toggled.connect(self._options_changed)
        for line in (self.out, self.reviewer):
            line.textChanged.connect(self._options_changed)
        for edit in (self.since, self.until):
            edit.dateChanged.connect(self._options_changed)
        self.val_fraction.valueChanged.connect(self._options_changed)
        self.seed.valueChanged.connect(self._options_changed)
        self.reviewer.textChanged.connect(self._preview_later)
        for edit in (self.since, self.until):
            edit.dateChanged.connect(self._preview_later)
        self.val_fraction.valueChanged.connect(self._preview_later)
        self.seed.valueChanged.connect(self._preview_later)
        self.refresh_preview()

    # --- the preview: what the options select, split as the export will split it -------

    def _preview_later(self, *_args) -> None:
        self._preview_timer.start()

    def refresh_preview(self) -> None:
        """Ask the read thread for the counts of these options; the newest answer wins."""
        self._preview_serial += 1
        serial, options = self._preview_serial, self.options()

        def show(preview: ExportPreview) -> None:
            if serial == self._preview_serial:
                self._show_preview(preview)

        self.reads.query(lambda library: preview_export(library, options), show)

    def _show_preview(self, preview: ExportPreview) -> None:
        self.preview = preview
        if preview.error:
            self.preview_label.setText(f"Nothing yet: {preview.error}")
            return
        if not preview.total:
            self.preview_label.setText("Nothing: no reviewed image matches these options.")
            return
        rows = [
            f"{split}: " + ", ".join(f"{n:,} {name}" for name, n in classes.items())
            for split, classes in preview.counts.items()
        ]
        images = "image" if preview.total == 1 else "images"
        self.preview_label.setText("\n".join([f"{preview.total:,} {images}", *rows]))

    def options(self) -> ExportOptions:
        return ExportOptions(
            out=Path(self.out.text().strip()).expanduser(),
            only_corrections=self.only_corrections.isChecked(),
            folder=self.folder if self.only_folder.isChecked() else None,
            reviewer=self.reviewer.text().strip() or None,
            since=self.since.date().toString(Qt.DateFormat.ISODate)
            if self.use_dates.isChecked()
            else None,
            until=self.until.date().toString(Qt.DateFormat.ISODate)  # the whole day
            if self.use_dates.isChecked()
            else None,
            val_fraction=self.val_fraction.value(),
            seed=self.seed.value(),
            link=self.link.isChecked(),
            overwrite=self.overwrite.isChecked(),
            include_source_path=self.source_paths.isChecked(),
        )

    def start(self) -> None:
        if not self.out.text().strip():
            self.status.setText("Choose a folder to export to.")
            return
        self.running = True
        self.report = None
        self.export_button.setEnabled(False)
        self.close_button.setText("Cancel")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.summary.hide()
        self.status.setText("Exporting…")
        self._running_options = self.options()
        self.export_requested.emit(self._running_options)

    def _browse(self) -> None:
        folder = file_dialogs.save_path(self, "Export the dataset to a new folder")
        if folder:
            self.out.setText(folder)

    def _on_progress(self, progress: Progress) -> None:
        if progress.total:
            self.progress.setRange(0, progress.total)
            self.progress.setValue(progress.done)
        self.status.setText(progress.describe())

    def _done(self) -> None:
        self.running = False
        self.export_button.setEnabled(True)
        self.close_button.setText("Close")
        self.progress.hide()

    def _options_changed(self, *_args) -> None:
        """Export is offered again once the options ask for another dataset than the one
        just written (and withdrawn if they are set back to it)."""
        if self.exported is None or self.running:
            return
        again = self.options() != self.exported
        self.export_button.setEnabled(again)
        (self.export_button if again else self.close_button).setDefault(True)
        self.status.setText(
            "Options changed: Export writes another dataset." if again else self._written
        )

    def _on_finished(self, report: ExportReport) -> None:
        self._done()
        self.report = report
        # Written: Close takes Return, and Export waits until an option changes (from the
        # options this export ran with, whatever was touched while it ran).
        self.exported = self._running_options
        self.export_button.setToolTip(
            "This export is written: change an option or the folder to export again"
        )
        self.close_button.setFocus()
        lines = [
            f"Exported {report.exported:,} images to {report.out} "
            f"({format_size(report.bytes)} in {report.elapsed_s:.1f} s)."
        ]
        for split, classes in report.counts.items():
            lines.append(f"  {split}: " + ", ".join(f"{n:,} {c}" for c, n in classes.items()))
        if report.skipped:
            lines.append(f"Left out {len(report.skipped)}:")
            lines.extend(f"  {source}: {reason}" for source, reason in report.skipped)
        self._written = (
            f"Done: the dataset is in {report.out}. Change an option or the folder to export again."
        )
        self.summary.setPlainText("\n".join(lines))
        self.summary.show()
        self._options_changed()  # Export off, or on if the options moved meanwhile

    def _on_failed(self, message: str) -> None:
        self._done()
        self.status.setText(message)

    def _close_or_cancel(self) -> None:
        if self.running:
            self.task.worker.cancel()
            self.status.setText("Cancelling…")
        else:
            self.accept()

    def done(self, result: int) -> None:  # every way the dialog closes
        self.task.stop()
        self._preview_timer.stop()
        if self._own_reads:
            self.reads.stop()
        super().done(result)
