"""The desk's main window: grid, threshold, filters, detail pane, review keys, status bar.

A thin layer: scanning happens in the worker thread; every library read and write goes
through gui/library_tasks.py on threads of their own (the GUI thread never waits on SQLite);
this window only arranges widgets and routes actions.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from pathlib import Path

from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QItemSelectionModel,
    QObject,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QPushButton,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QWidget,
)

from nsfw_desk.core.logs import log_problem
from nsfw_desk.core.progress import Progress
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.settings import Settings
from nsfw_desk.core.store import default_library_path, default_thumbnails_path
from nsfw_desk.gui.commands import DecisionCommand
from nsfw_desk.gui.detail import DetailPane
from nsfw_desk.gui.grid import FILTERS, SORTS, ResultsModel, Role
from nsfw_desk.gui.library_tasks import LibraryReads, ReviewWrites
from nsfw_desk.gui.loupe import Loupe
from nsfw_desk.gui.resources import action_icon, app_icon
from nsfw_desk.gui.settings_dialog import SettingsDialog
from nsfw_desk.gui.thumbnails import ThumbnailCache
from nsfw_desk.gui.tiles import TileDelegate
from nsfw_desk.gui.worker import ScanRequest, ScanWorker, TaskThread

log = logging.getLogger(__name__)
THUMB_SIZES = (96, 128, 160, 200, 256)
HOLD_TO_REVEAL_MS = 350


class MainWindow(QMainWindow):
    scan_requested = Signal(object)  # ScanRequest, queued to the worker thread
    first_paint = Signal()

    def __init__(
        self,
        settings: Settings,
        *,
        library_path: Path | None = None,
        model: str | None = None,
        device: str | None = None,
        save_settings: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.save_settings = save_settings
        self.model_override, self.device_override = model, device
        self.library_path = Path(library_path) if library_path else default_library_path()
        # Each owns a connection on its own thread, opened on first use.
        self.reads = LibraryReads(self.library_path, self)
        self.writes = ReviewWrites(self.library_path, self)
        self.model_id: str | None = None
        self.device_text = ""
        self.folder: Path | None = None
        self.scanning = False
        self._scan_serial = 0
        self._seen_paths: set[Path] = set()
        self._painted = False

        self.setWindowTitle("nsfw-desk")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.undo_stack = QUndoStack(self)
        self.thumbnails = ThumbnailCache(
            default_thumbnails_path(self.library_path),
            strength=settings.blur_strength,
            grayscale=settings.grayscale,
            parent=self,
        )
        self.results = ResultsModel(self)
        self.results.threshold = settings.threshold
        self.results.sort = settings.sort if settings.sort in SORTS else "score"
        self.results.filter = settings.filter if settings.filter in FILTERS else "all"
        self.results.saving = self.writes.saving

        self._build_grid()
        self.detail = DetailPane(self.thumbnails)
        self.detail.reveal_requested.connect(self._reveal_current)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.grid)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)
        self._build_loupe()
        self._build_toolbar()
        self._build_status_bar()
        self._build_menus()
        self._restore_window()

        self.worker = TaskThread(ScanWorker(self.library_path), "nsfw-desk-scan")
        w = self.worker.worker
        self.scan_requested.connect(w.scan, Qt.ConnectionType.QueuedConnection)
        w.stored_results.connect(self._on_stored_results)
        w.model_loading.connect(lambda name: self.status.setText(f"Loading {name}…"))
        w.model_ready.connect(self._on_model_ready)
        w.model_failed.connect(self._on_model_failed)
        w.library_failed.connect(self._on_library_failed)
        w.scan_failed.connect(self._on_scan_failed)
        w.progress.connect(self._on_progress)
        w.results.connect(self._on_results)
        w.finished.connect(self._on_finished)
        self.thumbnails.changed.connect(lambda _h: self.grid.viewport().update())
        self.writes.saved.connect(self._on_saved)
        self.writes.failed.connect(self._on_write_failed)
        self.writes.state_changed.connect(self._on_writes_state)
        self.reads.failed.connect(self._on_read_failed)
        self._detail_serial = 0
        self._library_problem_shown = False
        # Open (and migrate) the library now, off this thread, so a problem shows at once.
        self.reads.query(lambda library: None, lambda _: None)
        self._update_counts()

    # --- building ----------------------------------------------------------------------

    def _build_grid(self) -> None:
        self.grid = QListView()
        # List mode with wrapping lays out uniform tiles as a grid, like icon mode, but
        # without icon mode's per-item geometry; batched layout keeps 100,000 tiles fluid.
        self.grid.setFlow(QListView.Flow.LeftToRight)
        self.grid.setWrapping(True)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(500)
        self.grid.setSpacing(4)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setModel(self.results)
        self.results.marks_changed.connect(self.grid.viewport().update)
        self.delegate = TileDelegate(self.thumbnails, self.settings.thumbnail_size, self.grid)
        self.grid.setItemDelegate(self.delegate)
        self.grid.selectionModel().currentChanged.connect(lambda *_: self._show_detail())
        self.grid.installEventFilter(self)
        self.grid.viewport().installEventFilter(self)
        self._hold = QTimer(self, singleShot=True, interval=HOLD_TO_REVEAL_MS)
        self._hold.timeout.connect(lambda: self._reveal_current(True))

    def _build_toolbar(self) -> None:
        bar = QToolBar("Threshold and filters")
        bar.setObjectName("filters")
        bar.setMovable(False)
        self.addToolBar(bar)
        bar.addWidget(QLabel(" Threshold "))
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100)
        self.slider.setFixedWidth(220)
        self.slider.setValue(round(self.settings.threshold * 100))
        self.spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.01, decimals=2)
        self.spin.setValue(self.settings.threshold)
        self.slider.valueChanged.connect(lambda v: self.spin.setValue(v / 100))
        self.spin.valueChanged.connect(self.set_threshold)
        bar.addWidget(self.slider)
        bar.addWidget(self.spin)
        bar.addSeparator()
        self.counts_label = QLabel()
        bar.addWidget(self.counts_label)
        spacer = QWidget()
        spacer.setSizePolicy(
            spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy()
        )
        bar.addWidget(spacer)
        bar.addWidget(QLabel(" Show "))
        self.filter_box = QComboBox()
        for key, text in FILTERS.items():
            self.filter_box.addItem(text, key)
        self.filter_box.setCurrentIndex(list(FILTERS).index(self.results.filter))
        self.filter_box.currentIndexChanged.connect(
            lambda i: self.set_filter(self.filter_box.itemData(i))
        )
        bar.addWidget(self.filter_box)
        bar.addWidget(QLabel(" Sort "))
        self.sort_box = QComboBox()
        for key, text in SORTS.items():
            self.sort_box.addItem(text, key)
        self.sort_box.setCurrentIndex(list(SORTS).index(self.results.sort))
        self.sort_box.currentIndexChanged.connect(
            lambda i: self.set_sort(self.sort_box.itemData(i))
        )
        bar.addWidget(self.sort_box)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status = QLabel("Open a folder to scan (Ctrl+O)")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedWidth(220)
        self.progress_bar.setFormat("%v / %m")
        self.progress_bar.hide()
        self.device_label = QLabel()
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the scan; what is scanned is kept (Ctrl+.)")
        self.stop_button.clicked.connect(self.stop_scan)
        self.stop_button.hide()
        self.saving_label = QLabel()
        self.saving_label.setObjectName("saving")
        self.saving_label.setStyleSheet("color: #b00020; font-weight: bold;")
        self.saving_label.hide()
        bar.addWidget(self.status, 1)
        bar.addPermanentWidget(self.saving_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.stop_button)

    def _action(
        self,
        menu,
        text: str,
        slot,
        shortcuts=(),
        *,
        checkable=False,
        checked=False,
        icon: str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if icon:
            action.setIcon(action_icon(icon))
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        action.setCheckable(checkable)
        if checkable:
            action.setChecked(checked)
            action.toggled.connect(slot)
        else:
            action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)  # shortcuts work wherever focus is in the window
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open folder…", self.choose_folder, ["Ctrl+O"], icon="open")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._fill_recent()
        self.rescan_action = self._action(file_menu, "&Rescan", self.rescan, ["F5"])
        self.stop_action = self._action(file_menu, "&Stop scan", self.stop_scan, ["Ctrl+."])
        file_menu.addSeparator()
        self._action(file_menu, "&Export dataset…", self.open_export, ["Ctrl+E"], icon="export")
        file_menu.addSeparator()
        self._action(file_menu, "&Settings…", self.open_settings, ["Ctrl+,"])
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, ["Ctrl+Q"])

        edit = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts([QKeySequence("Ctrl+Z")])
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for action in (undo, redo):
            edit.addAction(action)
            self.addAction(action)
        edit.addSeparator()
        self._action(edit, "Select &all", self.grid.selectAll, ["Ctrl+A"])

        review = bar.addMenu("&Review")
        self._action(review, "Mark &unsafe", lambda: self.decide("unsafe"), ["U"])
        self._action(review, "Mark &safe", lambda: self.decide("safe"), ["S"])
        self._action(review, "&Clear label", lambda: self.decide(None), ["0", "Backspace"])
        review.addSeparator()
        self._action(review, "&Next image", lambda: self.move(1), ["J"])
        self._action(review, "&Previous image", lambda: self.move(-1), ["K"])
        review.addSeparator()
        self._action(
            review, "Cali&brate threshold…", self.open_calibration, ["Ctrl+T"], icon="calibrate"
        )
        review.addSeparator()
        self.auto_advance_action = self._action(
            review,
            "&Auto-advance after a decision",
            self._set_auto_advance,
            checkable=True,
            checked=self.settings.auto_advance,
        )

        view = bar.addMenu("&View")
        reveal = QAction("&Reveal selected (hold Space or press and hold)", self)
        reveal.setShortcut(QKeySequence("Space"))
        reveal.setEnabled(False)  # shown for discoverability; the key is handled on press/release
        view.addAction(reveal)
        self.hide_action = self._action(
            view, "&Hide all images", self.toggle_hide_all, ["Esc"], checkable=True, icon="hide"
        )
        view.addSeparator()
        self._action(view, "&Larger thumbnails", lambda: self.zoom(1), ["Ctrl++", "Ctrl+="])
        self._action(view, "&Smaller thumbnails", lambda: self.zoom(-1), ["Ctrl+-"])
        self._add_loupe_actions(view)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, ["F1", "?"])
        self._action(help_menu, "Open &log folder", self.open_log_folder)
        self._action(help_menu, "&About nsfw-desk", self.show_about)

    # --- folders and scanning -----------------------------------------------------------

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Open a folder of images", str(self.folder or Path.home())
        )
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path) -> None:
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            QMessageBox.warning(self, "Not a folder", f"{folder} is not a folder.")
            return
        self.folder = folder
        self.setWindowTitle(f"{folder.name} — nsfw-desk")
        self.settings.add_recent(folder)
        self._fill_recent()
        self.results.reset(folder)
        self.detail.show_item(None)
        self._start_scan()

    def rescan(self) -> None:
        if self.folder is not None and not self.scanning:
            self._start_scan()

    def _start_scan(self) -> None:
        """Queue a scan; a running one is cancelled first and its `finished` then ignored."""
        if self.scanning:
            self.worker.worker.cancel()
        self._scan_serial += 1
        self.scanning = True
        self._seen_paths = set()
        self.status.setText(f"Scanning {self.folder}…")
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.stop_button.show()
        self.scan_requested.emit(
            ScanRequest(
                self.folder,
                self.model_override if self.model_override is not None else self.settings.model,
                self.device_override or self.settings.device,
                self.settings.precision,
                self.settings.batch_size,
                serial=self._scan_serial,
            )
        )

    def stop_scan(self) -> None:
        if self.scanning:
            self.worker.worker.cancel()
            self.status.setText("Stopping…")

    def _on_stored_results(self, folder: Path, model_id: str, outcomes: list, labels: dict) -> None:
        if folder != self.folder:
            return
        self.model_id = model_id
        with self._keeping_current():
            self.results.reset(folder, outcomes, self.writes.shown_labels(labels))

    def _on_model_ready(self, model_id: str, description: str) -> None:
        self.model_id = model_id
        self.device_text = description
        self.device_label.setText(description)

    def _on_library_failed(self, kind: str, message: str) -> None:
        """The scan stopped because of the library: full disk, lock held, damaged file."""
        title = {
            "full": "Disk full",
            "busy": "Library busy",
        }.get(kind, "Library not usable")
        self.status.setText(f"The scan stopped: {title.lower()}")
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, parent=self)
        retry = box.addButton("Scan again", QMessageBox.ButtonRole.ActionRole)
        show = box.addButton("Show library folder", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.exec()
        if box.clickedButton() is retry and self.folder is not None:
            self._start_scan()
        elif box.clickedButton() is show:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.library_path.parent)))

    def _on_scan_failed(self, message: str) -> None:
        """Anything else that stopped a scan is a bug: say so and where the details are."""
        self.status.setText("The scan stopped on an unexpected error")
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "The scan stopped",
            "The scan stopped on an unexpected error. What was scanned is kept.\n\n"
            f"{message}\n\nThe log has the details; please include it in a bug report.",
            parent=self,
        )
        logs = box.addButton("Open log folder", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.exec()
        if box.clickedButton() is logs:
            self.open_log_folder()

    def _on_model_failed(self, message: str) -> None:
        self.status.setText("The model could not be loaded")
        box = QMessageBox(QMessageBox.Icon.Critical, "Model not available", message, parent=self)
        choose = box.addButton("Choose a local model folder…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.exec()
        if box.clickedButton() is choose:
            folder = QFileDialog.getExistingDirectory(
                self, "Choose a model folder (config.json + model.safetensors)"
            )
            if folder:
                self.settings.model = folder
                self.model_override = None
                self._save_settings()
                if self.folder is not None:
                    self._start_scan()

    def _on_progress(self, progress: Progress) -> None:
        if progress.phase in ("scan", "download") and progress.total:
            self.progress_bar.setRange(0, progress.total)
            self.progress_bar.setValue(progress.done)
        self.status.setText(progress.describe())

    def _on_results(self, folder: Path, outcomes: list, labels: dict) -> None:
        if folder != self.folder:
            return
        self._seen_paths.update(o.path for o in outcomes)
        self.results.merge(outcomes)
        # A decision still being written shows what the moderator chose, not the library.
        labels = {h: v for h, v in labels.items() if h not in self.writes.saving}
        if labels:
            self.results.set_labels(labels)
        self._update_counts()
        if self.grid.currentIndex().row() < 0 and self.results.rowCount() > 0:
            self.grid.setCurrentIndex(self.results.index(0))

    def _on_finished(self, request, summary) -> None:
        if request.serial != self._scan_serial:
            return  # a scan that was replaced by a newer one
        folder = request.folder
        self.scanning = False
        self.progress_bar.hide()
        self.stop_button.hide()
        if folder != self.folder or summary is None:
            return
        if not summary.cancelled:
            # Like the library: rows under folders that could not be read stay.
            kept = {
                p
                for p in self.results.paths()
                if any(folder == p or folder in p.parents for folder in summary.unlisted)
            }
            self.results.remove_missing(self._seen_paths | kept)
        self._update_counts()
        verb = "Stopped" if summary.cancelled else "Scanned"
        self.status.setText(
            f"{verb}: {summary.files:,} files in {summary.elapsed_s:.1f} s · "
            f"{summary.scored:,} new · {summary.errors:,} errors"
        )

    # --- threshold, filter, sort ------------------------------------------------------------

    def set_threshold(self, value: float) -> None:
        value = round(float(value), 2)
        self.settings.threshold = value
        if self.slider.value() != round(value * 100):
            self.slider.blockSignals(True)
            self.slider.setValue(round(value * 100))
            self.slider.blockSignals(False)
        with self._keeping_current():
            self.results.set_threshold(value)

    def set_filter(self, name: str) -> None:
        self.settings.filter = name
        with self._keeping_current():
            self.results.set_filter(name)

    def set_sort(self, name: str) -> None:
        self.settings.sort = name
        with self._keeping_current():
            self.results.set_sort(name)

    def _update_counts(self) -> None:
        self.counts_label.setText("  " + str(self.results.counts()) + "  ")

    # --- review -----------------------------------------------------------------------

    def decide(self, label: str | None) -> None:
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        if not rows and self.grid.currentIndex().isValid():
            rows = [self.grid.currentIndex().row()]
        items = []
        for row in rows:
            index = self.results.index(row)
            digest = index.data(Role.HASH)
            if digest and not index.data(Role.ERROR):
                items.append(
                    DecisionInput(
                        digest, self.model_id, index.data(Role.SCORE), index.data(Role.PATH)
                    )
                )
        if not items:
            return
        last_path = self.results.index(rows[-1]).data(Role.PATH)
        command = DecisionCommand(
            self.writes,
            items,
            label,
            previous={i.hash: self.results.label_of(i.hash) for i in items},
            reviewer=self.settings.reviewer,
            threshold=self.results.threshold,
            on_change=self._labels_changed,
        )
        self.undo_stack.push(command)  # push runs redo(): shown now, committed by the writer
        if self.settings.auto_advance:
            position = self.results.row_of(last_path)
            if position is None:  # filtered away by its new label: stay at the same place
                position = min(rows[-1] - len(rows), self.results.rowCount() - 2)
            self._select_row(min(position + 1, self.results.rowCount() - 1))
        else:
            self._show_detail()

    def _labels_changed(self, labels: dict[str, str | None], _command=None) -> None:
        with self._keeping_current():
            self.results.set_labels(labels)
        self._show_detail()

    def _on_saved(self, _ticket: int, labels: dict) -> None:
        """The library committed a decision: show what it holds, without the saving mark."""
        self._labels_changed(labels)
        self.grid.viewport().update()

    def _on_write_failed(self, message: str, labels: dict) -> None:
        self._labels_changed(labels)
        QMessageBox.warning(
            self,
            "A decision was not saved",
            f"A decision could not be saved and was taken back:\n\n{message}\n\n"
            "The tiles show the labels the library holds. The log has the details.",
        )

    def _on_writes_state(self) -> None:
        """Say how many decisions are not saved yet, and why, while the library refuses them."""
        self.grid.viewport().update()
        problem = self.writes.problem
        if problem is None or not self.writes.waiting:
            self.saving_label.hide()
            return
        waiting = self.writes.waiting
        what = f"{waiting:,} decision{'s' if waiting != 1 else ''} not saved yet"
        self.saving_label.setText(f"⚠ {what}: {self._unsaved_reason()}")
        self.saving_label.setToolTip(problem[1])
        self.saving_label.show()

    def _unsaved_reason(self) -> str:
        """Why decisions wait, in the desk's words (they are kept and retried, never dropped)."""
        kind = self.writes.problem[0] if self.writes.problem else ""
        return {
            "full": "the disk is full; they are kept and saved once there is space",
            "busy": "the library is locked by another program; retrying",
        }.get(kind, "the library cannot be written; retrying")

    def _on_read_failed(self, kind: str, message: str) -> None:
        log.debug("a library read failed (%s)", kind)
        self.status.setText(f"Could not read the library: {message}")
        if kind == "library" and not self._library_problem_shown:
            self._library_problem_shown = True  # once: every later read would say the same
            QMessageBox.critical(self, "Library not usable", message)

    def move(self, step: int) -> None:
        row = self.grid.currentIndex().row()
        self._select_row(max(0, min(self.results.rowCount() - 1, row + step)))

    def _set_auto_advance(self, on: bool) -> None:
        self.settings.auto_advance = on

    # --- reveal, hide, zoom -----------------------------------------------------------

    def _reveal_current(self, on: bool) -> None:
        digest = self.grid.currentIndex().data(Role.HASH) if on else None
        self.delegate.revealed = digest
        self.detail.set_revealed(on and digest is not None)
        self.loupe.set_revealed(on and digest is not None)
        self.grid.viewport().update()

    def toggle_hide_all(self, hidden: bool) -> None:
        self.delegate.hide_all = hidden
        self.detail.set_hide_all(hidden)
        self.loupe.set_hide_all(hidden)
        self.grid.viewport().update()

    def zoom(self, step: int) -> None:
        sizes = THUMB_SIZES
        current = min(range(len(sizes)), key=lambda i: abs(sizes[i] - self.delegate.size))
        size = sizes[max(0, min(len(sizes) - 1, current + step))]
        self.delegate.size = size
        self.settings.thumbnail_size = size
        self.grid.setGridSize(self.delegate.tile_size() + QSize(4, 4))
        self.results.layoutChanged.emit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        kind = event.type()
        if (
            kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease)
            and event.key() == Qt.Key.Key_Space
        ):
            if not event.isAutoRepeat():
                self._reveal_current(kind == QEvent.Type.KeyPress)
            return True
        if watched is self.grid.viewport():
            left = getattr(event, "button", lambda: None)() == Qt.MouseButton.LeftButton
            if kind == QEvent.Type.MouseButtonPress and left:
                self._hold.start()  # press and hold on a tile reveals it
            elif kind == QEvent.Type.MouseButtonRelease:
                self._hold.stop()
                if self.delegate.revealed:
                    self._reveal_current(False)
        return super().eventFilter(watched, event)

    # --- loupe and shortcut sheet -------------------------------------------------------

    def _build_loupe(self) -> None:
        """The loupe takes the whole central area (grid and detail pane) while it is open.

        The splitter is moved into a stack as a whole: reparenting the grid alone changed the
        order in which Qt destroys widgets at exit and crashed PySide's cleanup.
        """
        self.loupe = Loupe(self.thumbnails, HOLD_TO_REVEAL_MS)
        self.view_stack = QStackedWidget()
        self.view_stack.addWidget(self.takeCentralWidget())
        self.view_stack.addWidget(self.loupe)
        self.setCentralWidget(self.view_stack)
        self.loupe.view.back_requested.connect(self.close_loupe)
        self.loupe.view.reveal_requested.connect(self._reveal_current)
        self.grid.doubleClicked.connect(lambda _index: self.open_loupe())
        self.grid.selectionModel().currentChanged.connect(lambda *_: self._loupe_follow())
        self.results.dataChanged.connect(lambda *_: self._loupe_follow())
        self.results.modelReset.connect(self._loupe_follow)

    def _add_loupe_actions(self, menu) -> None:
        menu.addSeparator()
        self._action(menu, "Open in the &loupe", self._open_loupe_key, ["Return", "Enter"])
        self.loupe_size_action = self._action(
            menu, "Loupe: &fit / actual size (1:1)", self.loupe.view.toggle_actual_size, ["Z"]
        )
        self.loupe_size_action.setEnabled(False)  # only while the loupe is open

    def loupe_open(self) -> bool:
        return self.view_stack.currentWidget() is self.loupe

    def open_loupe(self) -> None:
        index = self.grid.currentIndex()
        if self.loupe_open() or not index.isValid():
            return
        # One item: U/S/0 in the loupe decide what it shows, not an older multi-selection.
        self._select_row(index.row())
        self.view_stack.setCurrentWidget(self.loupe)
        self.loupe_size_action.setEnabled(True)
        self._loupe_follow()
        self.loupe.view.setFocus()

    def _open_loupe_key(self) -> None:
        """Return opens the loupe, except in a field where Return means "done" (it stays that)."""
        field = QApplication.focusWidget()
        if isinstance(field, QLineEdit) and isinstance(field.parent(), QAbstractSpinBox):
            field = field.parent()  # a spin box's own line edit
        if isinstance(field, QAbstractSpinBox):
            field.interpretText()
            field.editingFinished.emit()
        elif isinstance(field, QLineEdit):
            field.returnPressed.emit()
            field.editingFinished.emit()
        elif not isinstance(field, QComboBox):
            self.open_loupe()

    def close_loupe(self) -> None:
        if not self.loupe_open():
            return
        self._reveal_current(False)
        self.view_stack.setCurrentWidget(self.splitter)
        self.loupe_size_action.setEnabled(False)
        self.loupe.show_item(None)  # let the full-size pixels go
        self.grid.setFocus()
        if self.grid.currentIndex().isValid():
            self.grid.scrollTo(self.grid.currentIndex())

    def _loupe_follow(self) -> None:
        """The loupe shows the grid's current item (decisions and J/K move it)."""
        if not self.loupe_open():
            return
        index = self.grid.currentIndex()
        if not index.isValid():
            self.loupe.show_item(None)
            return
        self.loupe.show_item(
            index.data(Role.PATH),
            index.data(Role.HASH),
            index.data(Role.ERROR),
            label=index.data(Role.LABEL),
            saving=bool(index.data(Role.SAVING)),
            score=index.data(Role.SCORE),
        )

    def show_shortcuts(self) -> None:
        from nsfw_desk.gui.shortcut_sheet import ShortcutSheet

        for old in self.findChildren(ShortcutSheet):
            old.close()  # one sheet, made afresh: actions added since are on it
        ShortcutSheet(self).show()

    # --- selection helpers --------------------------------------------------------------

    @contextlib.contextmanager
    def _keeping_current(self):
        """Re-sort, re-filter or reload the grid without losing the moderator's place."""
        current = self._current_path()
        yield
        self._select_path(current)
        self._update_counts()

    def _current_path(self) -> Path | None:
        index = self.grid.currentIndex()
        return index.data(Role.PATH) if index.isValid() else None

    def _select_path(self, path: Path | None) -> None:
        if path is None:
            return
        position = self.results.row_of(path)
        if position is not None:
            self._select_row(position)

    def _select_row(self, row: int) -> None:
        if row < 0 or row >= self.results.rowCount():
            self._show_detail()
            return
        index = self.results.index(row)
        self.grid.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.grid.scrollTo(index)
        self._show_detail()

    def _show_detail(self) -> None:
        index = self.grid.currentIndex()
        if not index.isValid():
            self.detail.show_item(None)
            return
        path, digest = index.data(Role.PATH), index.data(Role.HASH)
        label, error = index.data(Role.LABEL), index.data(Role.ERROR)
        score = index.data(Role.SCORE)
        self.detail.show_item(
            path,
            digest,
            scores={self.model_id: score} if self.model_id and score is not None else {},
            label=label,
            error=error,
        )
        # Facts, every model's score and the history come from the read thread.
        self._detail_serial += 1
        serial = self._detail_serial

        def read(library):
            return (
                library.file_facts(path),
                library.scores_by_model(digest) if digest else {},
                ReviewStore(library).history(digest) if digest else [],
            )

        def show(found) -> None:
            if serial != self._detail_serial:
                return  # the moderator has moved on
            facts, scores, history = found
            current = self.grid.currentIndex()
            self.detail.show_item(
                path,
                digest,
                facts=facts,
                scores=scores,
                label=current.data(Role.LABEL) if current.isValid() else label,
                error=error,
                history=history,
            )

        self.reads.query(read, show)

    # --- settings, recent folders, drag and drop, window state --------------------------

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return
        new = dialog.result_settings()
        model_changed = (new.model, new.device, new.batch_size) != (
            self.settings.model,
            self.settings.device,
            self.settings.batch_size,
        )
        style_changed = (new.blur_strength, new.grayscale) != (
            self.settings.blur_strength,
            self.settings.grayscale,
        )
        self.settings = new
        self.auto_advance_action.setChecked(new.auto_advance)
        if style_changed:
            self.thumbnails.set_style(new.blur_strength, new.grayscale)
            self.grid.viewport().update()
            self.detail.set_revealed(False)
            self.loupe.reload()
        if model_changed:
            self.model_override = self.device_override = None
        self._save_settings()
        if model_changed and self.folder is not None:
            self._start_scan()

    def open_export(self) -> None:
        from nsfw_desk.gui.export_dialog import ExportDialog  # loaded when first needed

        ExportDialog(self.library_path, self.folder, self.settings.reviewer, self).exec()

    def open_calibration(self) -> None:
        from nsfw_desk.gui.calibration import CalibrationDialog  # QtCharts: only when asked

        dialog = CalibrationDialog(self.reads, self.results.threshold, self.model_id, self)
        dialog.threshold_applied.connect(self.spin.setValue)
        dialog.exec()

    def open_log_folder(self) -> None:
        from nsfw_desk.applog import log_dir

        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def show_about(self) -> None:
        from nsfw_desk.gui.about import show_about

        show_about(self, self.model_id, self.device_text)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_folder(Path(f)))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt API)
        urls = event.mimeData().urls()
        if urls and all(Path(u.toLocalFile()).is_dir() for u in urls[:1]):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt API)
        urls = event.mimeData().urls()
        if urls:
            self.open_folder(Path(urls[0].toLocalFile()))

    def _restore_window(self) -> None:
        for text, restore in (
            (self.settings.window_geometry, self.restoreGeometry),
            (self.settings.window_state, self.restoreState),
            (self.settings.splitter_state, self.splitter.restoreState),
        ):
            if text:
                restore(QByteArray(base64.b64decode(text)))
        if not self.settings.window_geometry:
            self.resize(1280, 800)
        self.grid.setGridSize(self.delegate.tile_size() + QSize(4, 4))

    def _save_settings(self) -> None:
        if self.save_settings:
            try:
                self.settings.save()
            except OSError as exc:
                log_problem(log, "could not save settings", exc)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_paint.emit()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        def encode(data: QByteArray) -> str:
            return base64.b64encode(bytes(data)).decode("ascii")

        self.settings.window_geometry = encode(self.saveGeometry())
        self.settings.window_state = encode(self.saveState())
        self.settings.splitter_state = encode(self.splitter.saveState())
        self._save_settings()
        if self.writes.waiting and not self._wait_for_writes():
            event.ignore()
            return
        self.worker.stop()
        self.writes.stop()
        self.reads.stop()
        self.thumbnails.wait_idle(2000)
        super().closeEvent(event)

    def _wait_for_writes(self) -> bool:
        """Let decisions still being written reach the library; False: keep the window open."""
        dialog = QProgressDialog(self)
        dialog.setWindowTitle("Saving decisions")
        dialog.setCancelButtonText("Quit without saving…")
        dialog.setRange(0, 0)
        dialog.setMinimumDuration(0)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)

        def update() -> None:
            if not self.writes.waiting:
                dialog.reset()
                dialog.accept()
                return
            waiting = self.writes.waiting
            text = f"Saving {waiting:,} decision{'s' if waiting != 1 else ''} to the library…"
            if self.writes.problem:
                text += f"\nNot yet: {self._unsaved_reason()}."
            dialog.setLabelText(text)

        self.writes.state_changed.connect(update)
        update()
        try:
            while self.writes.waiting:
                dialog.exec()
                if not self.writes.waiting:
                    break
                answer = QMessageBox.warning(
                    self,
                    "Quit without saving?",
                    f"{self.writes.waiting:,} decisions are not in the library yet and will be "
                    "lost if you quit now.",
                    QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
                    QMessageBox.StandardButton.Cancel,
                )
                if answer == QMessageBox.StandardButton.Discard:
                    log.warning("quit with %d decisions unsaved", self.writes.waiting)
                    return True
                if answer == QMessageBox.StandardButton.Cancel:
                    return False
        finally:
            self.writes.state_changed.disconnect(update)
        return True
