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
    QItemSelection,
    QItemSelectionModel,
    QObject,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QPushButton,
    QSlider,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from nsfw_desk.core.logs import log_problem
from nsfw_desk.core.progress import CancelToken, Progress
from nsfw_desk.core.result_columns import read_folder, read_scores
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.settings import Settings
from nsfw_desk.core.store import default_library_path, default_thumbnails_path
from nsfw_desk.core.units import count
from nsfw_desk.gui import file_dialogs
from nsfw_desk.gui.combos import ElidedLabel, fit_popup, narrow_combo
from nsfw_desk.gui.commands import DecisionCommand
from nsfw_desk.gui.detail import DetailPane
from nsfw_desk.gui.flow import EmptyGridHint, empty_grid_message, why_not_labellable
from nsfw_desk.gui.grid import (
    FILTER_KEYS,
    FILTERS,
    SORT_TIPS,
    SORTS,
    ResultsModel,
    Role,
    shown_name,
)
from nsfw_desk.gui.library_tasks import LibraryReads, ReviewWrites
from nsfw_desk.gui.loupe import Loupe
from nsfw_desk.gui.model_bar import ModelBar
from nsfw_desk.gui.model_switcher import ModelSwitcher, read_model_choices
from nsfw_desk.gui.near_dupes import THIS_ONE, NearDuplicateFinder, OfferBar
from nsfw_desk.gui.resources import action_icon, app_icon
from nsfw_desk.gui.settings_dialog import SettingsDialog
from nsfw_desk.gui.thumbnails import ThumbnailCache
from nsfw_desk.gui.tiles import TileDelegate
from nsfw_desk.gui.worker import ScanRequest, ScanWorker, TaskThread, keep_collections_short

log = logging.getLogger(__name__)
THUMB_SIZES = (96, 128, 160, 200, 256)
HOLD_TO_REVEAL_MS = 350
# The threshold, sort, filter and recent folders are saved this long after they last
# changed (a slider drag writes once), not only on a clean quit: a crash keeps them.
SETTINGS_SAVE_DELAY_MS = 500
_MODIFIER_KEYS = {Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta}

# The desk's own hint under a model error (core's messages name no front end's option).
MODEL_HINT = "Choose a model folder (config.json + model.safetensors) here or in Settings."


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
        self.model_names: dict[str, str] = {}  # model id → display name, as learnt
        # The model the switcher chose (what loads it); scans use it until Settings changes.
        self.switched_spec: str | None = None
        self.compare_model_id: str | None = None  # "Compare with" (its scores may be on the way)
        self.train_dialog = None  # Review → Train from my decisions…, while open
        self._switch_after_scan: str | None = None  # a model trained while a scan ran
        self._score_trained: str | None = None  # a model just trained: scan what it lacks
        self._models_serial = 0
        self.device_text = ""
        self.folder: Path | None = None
        self.scanning = False
        self._scan_serial = 0
        self._scan_cancel = CancelToken()  # the latest scan request's: Stop cancels it
        self._seen_paths: set[Path] = set()
        self._scan_stopped: str | None = None  # why the last scan ended without a summary
        self._unscanned = 0  # files of the folder the last scan, stopped, did not reach
        self._painted = False
        self._moved = False  # the moderator has moved in this folder: stop pinning row 0
        self._pushing = False  # a new decision is being pushed (not an undo or redo)
        self._settings_timer = QTimer(self, singleShot=True, interval=SETTINGS_SAVE_DELAY_MS)
        self._settings_timer.timeout.connect(self._save_settings)

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
        if settings.detectors:  # the slider is the primary detector's threshold
            settings.threshold = settings.detector_specs()[0][1]
        self.results.flag_rule = settings.flag_rule
        self.results.threshold = settings.threshold
        self.results.sort = settings.sort if settings.sort in SORTS else "score"
        self.results.filter = settings.filter if settings.filter in FILTERS else "all"
        self.results.saving = self.writes.saving

        self._build_grid()
        self.detail = DetailPane(self.thumbnails)
        self.detail.reveal_requested.connect(self._reveal_current)
        self.splitter = QSplitter()
        self.splitter.addWidget(self._with_offer_bar(self.grid))
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self._with_model_bar(self.splitter))
        self._build_loupe()
        self._build_toolbar()
        self._build_status_bar()
        self._build_menus()
        self._build_flow()
        self._build_notes_and_tags()
        self._build_grouping()
        self._restore_window()

        self.worker = TaskThread(ScanWorker(self.library_path), "nsfw-desk-scan")
        w = self.worker.worker
        self.scan_requested.connect(w.scan, Qt.ConnectionType.QueuedConnection)
        w.stored_results.connect(self._on_stored_results)
        # Methods, not lambdas: a lambda runs on the scan thread that emits, and widgets may
        # be touched from the window's thread only.
        w.model_loading.connect(self._on_model_loading)
        w.model_named.connect(self.model_names.__setitem__)
        w.model_ready.connect(self._on_model_ready)
        w.model_failed.connect(self._on_model_failed)
        w.library_failed.connect(self._on_library_failed)
        w.scan_failed.connect(self._on_scan_failed)
        w.progress.connect(self._on_progress)
        w.results.connect(self._on_results)
        w.finished.connect(self._on_finished)
        w.detector_failed.connect(self._on_detector_failed)
        self.thumbnails.changed.connect(lambda _h: self.grid.viewport().update())
        self.writes.saved.connect(self._on_saved)
        self.writes.failed.connect(self._on_write_failed)
        self.writes.state_changed.connect(self._on_writes_state)
        self.reads.failed.connect(self._on_read_failed)
        self._build_team_and_care()
        self._detail_serial = 0
        self._library_problem_shown = False
        # Open (and migrate) the library now, off this thread, so a problem shows at once.
        self.reads.query(lambda library: None, lambda _: None)
        self._update_counts()
        keep_collections_short()  # the modules and widgets made so far live as long

    def _on_model_loading(self, name: str) -> None:
        self.status.setText(f"Loading {name}…")

    def _on_detector_failed(self, why: str) -> None:
        self._say(f"A detector was left out: {why}")

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
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(self._tile_menu)
        self._hold = QTimer(self, singleShot=True, interval=HOLD_TO_REVEAL_MS)
        self._hold.timeout.connect(lambda: self._reveal_current(True))

    def _with_offer_bar(self, grid: QWidget) -> QWidget:
        """The near-duplicates offer above the grid (hidden until a decision finds some)."""
        self.near = NearDuplicateFinder(self.reads)
        self._near_serial = 0
        self.offer = OfferBar()
        self.offer.accepted.connect(self._accept_offer)
        self._offer_anchor: Path | None = None  # the item current when the offer was asked for
        self.grid.selectionModel().currentChanged.connect(lambda *_: self._on_current_moved())
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.offer)
        layout.addWidget(grid, 1)
        return box

    def _with_model_bar(self, content: QWidget) -> QWidget:
        """`content` under the bar that says why there is no model (hidden until then)."""
        self.model_bar = ModelBar()
        self.model_bar.choose_folder.connect(self.choose_model_folder)
        self.model_bar.open_settings.connect(self.open_settings)
        self.model_bar.retry.connect(self.retry_model)
        self.switcher = ModelSwitcher()
        self.switcher.model_chosen.connect(self.switch_model)
        self.switcher.compare_chosen.connect(self.compare_with)
        self.switcher.scan_again.connect(self.rescan)
        holder = QWidget()
        layout = QVBoxLayout(holder)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.setSpacing(4)
        layout.addWidget(self.switcher)
        layout.addWidget(self.model_bar)
        from nsfw_desk.gui.similar_view import SimilarView

        self.similar = SimilarView(self)
        layout.addWidget(self.similar.strip)
        layout.addWidget(content, 1)
        return holder

    def _build_toolbar(self) -> None:
        bar = QToolBar("Threshold and filters")
        bar.setObjectName("filters")
        bar.setMovable(False)
        self.addToolBar(bar)
        bar.addWidget(QLabel(" Threshold "))
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100)
        self.slider.setFixedWidth(150)  # room for Show, Sort and Tag at 1280 px
        self.slider.setValue(round(self.settings.threshold * 100))
        self.spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.01, decimals=2)
        self.spin.setValue(self.settings.threshold)
        self.slider.valueChanged.connect(lambda v: self.spin.setValue(v / 100))
        self.spin.valueChanged.connect(self.set_threshold)
        # Enter in the box hands the keys back to the grid, where the arrows move between
        # images (left in the box, they kept nudging the threshold).
        self.spin.editingFinished.connect(
            lambda: self.grid.setFocus() if self.spin.hasFocus() else None
        )
        bar.addWidget(self.slider)
        bar.addWidget(self.spin)
        from nsfw_desk.gui.detectors_view import DetectorsView

        self.detectors_view = DetectorsView(self, bar)  # the other detectors' thresholds
        bar.addSeparator()
        self.counts_label = ElidedLabel()  # gives way before Show, Sort and Tag do
        bar.addWidget(self.counts_label)
        spacer = QWidget()
        spacer.setSizePolicy(
            spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy()
        )
        bar.addWidget(spacer)
        bar.addWidget(QLabel(" Show "))
        self.filter_box = narrow_combo(10)
        for key, text in FILTERS.items():
            self.filter_box.addItem(text, key)
        self.filter_box.setCurrentIndex(list(FILTERS).index(self.results.filter))
        self.filter_box.currentIndexChanged.connect(
            lambda i: self.set_filter(self.filter_box.itemData(i))
        )
        bar.addWidget(self.filter_box)
        bar.addWidget(QLabel(" Sort "))
        self.sort_box = narrow_combo(11)
        for key, text in SORTS.items():
            self.sort_box.addItem(text, key)
            if key in SORT_TIPS:
                self.sort_box.setItemData(
                    self.sort_box.count() - 1, SORT_TIPS[key], Qt.ItemDataRole.ToolTipRole
                )
        self.sort_box.setCurrentIndex(list(SORTS).index(self.results.sort))
        self.sort_box.currentIndexChanged.connect(
            lambda i: self.set_sort(self.sort_box.itemData(i))
        )
        bar.addWidget(self.sort_box)
        fit_popup(self.filter_box)
        fit_popup(self.sort_box)

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
        self.recent_menu = file_menu.addMenu("Open rece&nt")
        self._fill_recent()
        self.rescan_action = self._action(file_menu, "&Rescan", self.rescan, ["F5"])
        self.stop_action = self._action(file_menu, "S&top scan", self.stop_scan, ["Ctrl+."])
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
        self._action(edit, "Select &all", self._select_all, ["Ctrl+A"])

        review = self.review_menu = bar.addMenu("&Review")
        self._action(review, "Mark &unsafe", lambda: self.decide("unsafe"), ["U"])
        self._action(review, "Mark &safe", lambda: self.decide("safe"), ["S"])
        self._action(review, "&Clear label", lambda: self.decide(None), ["0", "Backspace"])
        from nsfw_desk.gui.ai_label import GENERATED_KEY, REAL_KEY, AiLabels

        self.ai_labels = AiLabels(self)
        self._action(
            review, "Label AI-&generated", lambda: self.ai_labels.decide(True), [GENERATED_KEY]
        )
        self._action(
            review, "Label &real (not AI)", lambda: self.ai_labels.decide(False), [REAL_KEY]
        )
        self._action(review, "Clear AI-generated label", lambda: self.ai_labels.decide(None))
        self._action(
            review,
            "Label this and its near-duplicates unsafe",
            lambda: self.label_group("unsafe"),
            ["Shift+U"],
        )
        self._action(
            review,
            "Label this and its near-duplicates safe",
            lambda: self.label_group("safe"),
            ["Shift+S"],
        )
        review.addSeparator()
        self._action(review, "&Next image", lambda: self.move(1), ["J"])
        self._action(review, "&Previous image", lambda: self.move(-1), ["K"])
        self._action(review, "Next unre&viewed", self.next_unreviewed, ["N"])
        self._action(
            review, "Review the most uncertain &first", self.review_uncertain, ["Ctrl+Shift+U"]
        )
        review.addSeparator()
        self._action(
            review, "Cali&brate threshold…", self.open_calibration, ["Ctrl+T"], icon="calibrate"
        )
        review.addSeparator()
        self._action(review, "Tra&in from my decisions…", self.open_training)
        review.addSeparator()
        self.auto_advance_action = self._action(
            review,
            "&Auto-advance after a decision",
            self._set_auto_advance,
            checkable=True,
            checked=self.settings.auto_advance,
        )

        view = self.view_menu = bar.addMenu("&View")
        reveal = QAction("&Reveal selected (hold Space or press and hold)", self)
        reveal.setShortcut(QKeySequence("Space"))
        reveal.setEnabled(False)  # shown for discoverability; the key is handled on press/release
        view.addAction(reveal)
        self.hide_action = self._action(
            view, "&Hide all images", self.toggle_hide_all, ["Esc"], checkable=True, icon="hide"
        )
        self.grayscale_action = self._action(
            view,
            "&Grayscale thumbnails",
            self._set_grayscale,
            ["Ctrl+G"],
            checkable=True,
            checked=self.settings.grayscale,
        )
        view.addSeparator()
        self._action(view, "&Larger thumbnails", lambda: self.zoom(1), ["Ctrl++", "Ctrl+="])
        self._action(view, "&Smaller thumbnails", lambda: self.zoom(-1), ["Ctrl+-"])
        view.addSeparator()
        self._build_filter_actions(view.addMenu("Sho&w"))
        from nsfw_desk.gui.similar_view import SIMILAR_KEY

        self.similar_action = self._action(
            view, "Show s&imilar", self.similar.show_similar, [SIMILAR_KEY]
        )
        self._add_loupe_actions(view)
        from nsfw_desk.gui.heatmap import HEAT_KEY, HeatMaps

        self.heat_maps = HeatMaps(self)
        self.heat_action = self._action(
            view,
            "H&eat map: why it was flagged",
            self.heat_maps.toggle,
            [HEAT_KEY],
            checkable=True,
        )
        from nsfw_desk.gui.care import TODAY_KEY

        view.addSeparator()
        self._action(
            view, "&Today: reveals and review time", lambda: self.care.show_today(), [TODAY_KEY]
        )

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, ["F1", "?"])
        self._action(help_menu, "Open &log folder", self.open_log_folder)
        self._action(help_menu, "&About nsfw-desk", self.show_about)

    def _build_team_and_care(self) -> None:
        """Conflicts and assignments (gui/team.py); the reviewer's day and breaks (gui/care.py)."""
        from nsfw_desk.gui.care import ReviewerCare
        from nsfw_desk.gui.team import TeamView

        self.team = TeamView(self)
        self.care = ReviewerCare(self)
        self.grid.selectionModel().currentChanged.connect(
            lambda *_: self._moved and self.care.activity()
        )

    def _build_notes_and_tags(self) -> None:
        """Notes (Shift+N) and tags (T): gui/notes.py and gui/tags.py."""
        from nsfw_desk.gui.notes import NOTE_KEY, Notes
        from nsfw_desk.gui.tags import TAG_KEY, Tags

        self.notes = Notes(self)
        self.tags = Tags(self, self.findChild(QToolBar, "filters"))
        self.review_menu.addSeparator()
        self._action(
            self.review_menu, "A&dd a note…", self._acting(self.notes.add_note), [NOTE_KEY]
        )
        self._action(self.review_menu, "&Tags…", self._acting(self.tags.edit), [TAG_KEY])

    def _build_grouping(self) -> None:
        """Near-duplicate groups (D) and hash-list matches, on tasks of their own
        (gui/grouping.py, gui/dupe_tasks.py)."""
        from nsfw_desk.gui.grouping import Grouping

        self.grouping = Grouping(self)
        self.grouping.add_actions(self.view_menu)

    # --- folders and scanning -----------------------------------------------------------

    def choose_folder(self) -> None:
        folder = file_dialogs.existing_directory(
            self, "Open a folder of images", str(self.folder or Path.home())
        )
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path) -> None:
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            self._say_not_a_folder(folder)
            return
        self.folder = folder
        self._moved = False  # a new folder starts at the top of the grid
        self.setWindowTitle(f"{folder.name} — nsfw-desk")
        self.settings.add_recent(folder)
        self._settings_timer.start()
        self._fill_recent()
        self.similar.back()
        self.results.reset(folder)
        self.near.forget()
        self._drop_offer()
        self.compare_with(None)
        self.switcher.set_choices([], None, None)
        self.detail.show_item(None)
        self._start_scan()

    def rescan(self) -> None:
        if self.folder is not None and not self.scanning:
            self._start_scan()

    def _start_scan(self) -> None:
        """Queue a scan; a running one is cancelled first and its `finished` then ignored."""
        if self.scanning:
            self._scan_cancel.cancel()
        self._scan_serial += 1
        self.scanning = True
        self._scan_stopped = None
        self._unscanned = 0
        self._seen_paths = set()
        self.status.setText(f"Scanning {self.folder}…")
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.stop_button.show()
        self.switcher.set_busy(True)
        self._refresh_view_state()
        request = ScanRequest(
            self.folder,
            self._model_spec(),
            self.device_override or self.settings.device,
            self.settings.precision,
            self.settings.batch_size,
            serial=self._scan_serial,
            shown_model=self.model_id if self.switched_spec is not None else None,
            detectors=self.detectors_view.scan_specs(),
        )
        self._scan_cancel = request.cancel
        self.scan_requested.emit(request)

    def _model_spec(self) -> str | None:
        """What a scan loads: the switcher's choice, else --model, else Settings."""
        if self.switched_spec is not None:
            return self.switched_spec
        if self.model_override is not None:
            return self.model_override
        return self.settings.detector_specs()[0][0]  # the primary detector (or Settings.model)

    def stop_scan(self) -> None:
        if self.scanning:
            self._scan_cancel.cancel()
            self.status.setText("Stopping…")

    def _on_stored_results(self, folder: Path, model_id: str, outcomes, labels: dict) -> None:
        if folder != self.folder:
            return
        self.model_id = model_id
        if model_id not in self.model_names:
            self.reads.query(
                lambda library: library.model_names([model_id]), self.model_names.update
            )
        with self._keeping_current():
            self.results.reset_columns(folder, outcomes, self.writes.shown_labels(labels))
        self.refresh_models()
        if len(outcomes):  # the stored hashes' groups, before the scan ends
            self.grouping.group(folder, unless_running=True)

    # --- the model switcher and "Models disagree" (gui/model_switcher.py) ---------------

    def refresh_models(self) -> None:
        """List the models with scores in this folder (read thread: library, training.json)."""
        folder = self.folder
        if folder is None:
            return
        self._models_serial += 1
        serial = self._models_serial

        def show(choices) -> None:
            if serial != self._models_serial or folder != self.folder:
                return
            self.model_names.update({c.model_id: c.name for c in choices})
            compare = self.compare_model_id
            if compare == self.model_id or compare not in {c.model_id for c in choices}:
                self.compare_with(None)
            self.switcher.set_choices(
                choices, self.model_id, self.compare_model_id, self.model_name(self.model_id)
            )
            self._update_counts()

        # What the tiles show first (one read thread answers in the order asked), the
        # switcher's counts after: at a million files they take the longest.
        if self.compare_model_id is not None:  # its scores, for the rows just read
            self.compare_with(self.compare_model_id)
        self.detectors_view.load()  # the other detectors' scores (gui/detectors_view.py)
        self.ai_labels.load()
        self.reads.query(lambda library: read_model_choices(library, folder), show)

    def switch_model(self, model_id: str) -> None:
        """Show `model_id`'s stored scores for this folder; no scan (Scan again scores the rest).

        Not while a scan runs: its results are the scanning model's."""
        folder = self.folder
        if folder is None or self.scanning or model_id == self.model_id:
            return
        choice = self.switcher.choices.get(model_id)
        spec = choice.spec if choice and choice.spec else self.switched_spec
        self.switched_spec = None if self._is_settings_primary(spec) else spec
        self.similar.back()  # its similarities were the previous model's
        self.model_id = model_id
        if self.compare_model_id == model_id:
            self.compare_with(None)

        def read(library):
            outcomes, labels = read_folder(library, folder, model_id)
            return outcomes, labels, library.model_names([model_id])

        def show(found) -> None:
            if folder != self.folder or model_id != self.model_id:
                return
            outcomes, labels, names = found
            self.model_names.update(names)
            with self._keeping_current():
                self.results.reset_columns(folder, outcomes, self.writes.shown_labels(labels))
            self._refresh_view_state()
            self.refresh_models()
            self.load_list_matches()
            name = self.model_name(model_id)
            unscored = self.results.unscored()
            if unscored and self._score_trained == model_id:
                # Just trained and its backbone changed: the folder needs its scores now.
                self._score_trained = None
                self._start_scan()
                self.status.setText(f"Scoring {unscored:,} images with {name}, just trained…")
                return
            more = f" · {unscored:,} without a score (Scan again scores them)" if unscored else ""
            self.status.setText(f"Showing the stored scores of {name}{more}")

        self.reads.query(read, show)

    def load_list_matches(self) -> None:
        """Match the library against the imported hash lists (core/hashlists.py) on the
        matching task and show the matches on the tiles; it recomputes only when the lists
        or the library changed (View → Refresh hash-list matches forces it)."""
        self.grouping.match()

    def compare_with(self, model_id: str | None) -> None:
        """Put `model_id`'s scores beside the shown ones ("Models disagree" compares them)."""
        if model_id == self.model_id:
            model_id = None
        self.compare_model_id = model_id
        if model_id is None:
            if self.results.other_model_id is not None:
                with self._keeping_current():
                    self.results.set_other_scores(None)
                self._refresh_view_state()
            return
        snapshot = self.results.hash_snapshot()  # no object per row on this thread

        def show(scores) -> None:
            if self.compare_model_id != model_id:
                return
            self.results.other_model_name = self.model_name(model_id)
            with self._keeping_current():
                self.results.set_other_scores(model_id, scores, snapshot)
            self._refresh_view_state()

        self.reads.query(lambda library: read_scores(library, model_id, snapshot), show)

    def _on_model_ready(self, model_id: str, description: str) -> None:
        self.model_bar.hide()
        self.model_id = model_id
        self.device_text = description
        self.device_label.setText(description)

    def _on_library_failed(self, kind: str, message: str) -> None:
        """The scan stopped because of the library: full disk, lock held, damaged file."""
        title = {
            "full": "Disk full",
            "busy": "Library busy",
        }.get(kind, "Library not usable")
        self._scan_stopped = title.lower()
        self.status.setText(f"The scan stopped: {title.lower()}")
        if kind == "library":  # the read thread may have said it already: one dialog
            if self._library_problem_shown:
                return
            self._library_problem_shown = True
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
        self._scan_stopped = "an unexpected error"
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

    def model_name(self, model_id: str | None) -> str | None:
        """The display name of a model (core/store.py model_display_name)."""
        if model_id is None:
            return None
        from nsfw_desk.core.store import model_display_name

        return self.model_names.get(model_id) or model_display_name(model_id)

    def _on_model_failed(self, message: str) -> None:
        """No modal dialog: the folder is listed without scores below the bar."""
        self.status.setText("The model could not be loaded")
        self.model_bar.show_problem("Model not available", f"{message}\n\n{MODEL_HINT}")

    def choose_model_folder(self) -> None:
        folder = file_dialogs.existing_directory(
            self, "Choose a model folder (config.json + model.safetensors)"
        )
        if folder:
            self.settings.model = folder
            self.model_override = self.switched_spec = None
            self._save_settings()
            if self.folder is not None:
                self.model_bar.set_busy(True)
                self._start_scan()

    def retry_model(self) -> None:
        """Load the model again (fixed on disk, back online) and score the listed rows."""
        if self.folder is not None:
            self.model_bar.set_busy(True)
            self._start_scan()

    def _on_progress(self, progress: Progress) -> None:
        if progress.phase in ("scan", "download") and progress.total:
            self.progress_bar.setRange(0, progress.total)
            self.progress_bar.setValue(progress.done)
        self.status.setText(progress.describe())

    def _on_results(self, folder: Path, outcomes: list, labels: dict) -> None:
        if folder != self.folder:
            return
        # The folder itself unreadable (deleted, its drive unplugged) is no file: the status
        # line says so when the scan ends, no tile stands for it.
        outcomes = [o for o in outcomes if not (o.error_kind and o.path == folder)]
        self._seen_paths.update(o.path for o in outcomes)
        self.results.merge(outcomes)
        # A decision still being written shows what the moderator chose, not the library.
        labels = {h: v for h, v in labels.items() if h not in self.writes.saving}
        if labels:
            self.results.set_labels(labels)
        self._update_counts()
        if not self._moved:
            self._pin_first()
        elif self.grid.currentIndex().row() < 0 and self.results.rowCount() > 0:
            self.grid.setCurrentIndex(self.results.index(0))

    def _on_finished(self, request, summary) -> None:
        if request.serial != self._scan_serial:
            return  # a scan that was replaced by a newer one
        folder = request.folder
        self.near.forget()  # the scan may have hashed new files
        if folder == self.folder and summary is not None:
            self.grouping.group(folder)  # groups and ≈N counts, on the grouping task
        self.scanning = False
        self.progress_bar.hide()
        self.stop_button.hide()
        self.model_bar.set_busy(False)
        self.switcher.set_busy(False)
        if self._switch_after_scan is not None:
            model_id, self._switch_after_scan = self._switch_after_scan, None
            self.switch_model(model_id)
        self.similar.forget_indexes()  # the scan may have stored new embeddings
        if folder == self.folder and summary is None:  # failed, or stopped before it began
            if self._scan_stopped is None:
                self._scan_stopped = "stopped before any file was scanned"
                self.status.setText("Stopped before any file was scanned · F5 scans again")
            self._refresh_view_state()  # the empty grid no longer says "Scanning…"
        if folder != self.folder or summary is None:
            return
        self.refresh_models()
        self.load_list_matches()
        if self.compare_model_id is not None:
            self.compare_with(self.compare_model_id)  # scores for new files too
        self._unscanned = max(0, summary.files - summary.reached) if summary.cancelled else 0
        if not summary.cancelled:
            # Like the library: rows under folders that could not be read stay.
            kept = {
                p
                for p in self.results.paths()
                if any(folder == p or folder in p.parents for folder in summary.unlisted)
            }
            with self._keeping_current():
                self.results.remove_missing(self._seen_paths | kept)
        self._update_counts()
        self._refresh_view_state()
        if folder in summary.unlisted:  # deleted, renamed, or its drive unplugged
            self._say_folder_gone(folder)
            return
        if summary.model_id is None:
            self._say_listed(summary)
            return
        self.status.setText(self._scan_summary_text(summary))

    def _say_folder_gone(self, folder: Path) -> None:
        """The scanned folder cannot be opened: said in the status line and, with nothing
        stored to show, in the empty grid (with or without a model)."""
        gone = f"{folder} cannot be opened (deleted, renamed, or its drive not connected?)"
        if self.results.counts().total:
            self.status.setText(f"⚠ {gone}: showing the results stored before · F5 scans it again")
            return
        self.status.setText(f"⚠ {gone}: nothing stored to show · F5 scans it again")
        self._scan_stopped = gone  # the empty grid says it too, not "has no images"
        self._refresh_view_state()

    def _say_listed(self, summary) -> None:
        """The status line after a listing without a model (the bar says why)."""
        verb = "Stopped listing" if summary.cancelled else "Listed"
        self.status.setText(
            f"{verb} without a model: {count(summary.files, 'file')} · no scores · "
            f"{count(summary.errors, 'error')}"
        )

    # --- threshold, filter, sort ------------------------------------------------------------

    def set_threshold(self, value: float) -> None:
        value = round(float(value), 2)
        self.settings.threshold = value
        self._settings_timer.start()
        self.detectors_view.primary_threshold_moved(value)
        if self.slider.value() != round(value * 100):
            self.slider.blockSignals(True)
            self.slider.setValue(round(value * 100))
            self.slider.blockSignals(False)
        with self._keeping_current():
            self.results.set_threshold(value)

    def set_filter(self, name: str) -> None:
        if name == "models_disagree" and self.compare_model_id is None:
            self._choose_a_comparison()
        self.similar.back()  # a filter applies to the folder's view, not to "similar"
        self.settings.filter = name
        self._settings_timer.start()
        with self._keeping_current(if_gone="first"):
            self.results.set_filter(name)
        self._show_filter(name)

    def set_sort(self, name: str) -> None:
        self.similar.back()
        self.settings.sort = name
        self._settings_timer.start()
        with self._keeping_current():
            self.results.set_sort(name)
        self.sort_box.setToolTip(SORT_TIPS.get(name, ""))
        if name == "uncertain":
            self._say(
                f"Most uncertain first: scores nearest the threshold "
                f"({self.results.threshold:.2f}) first; N and auto-advance follow this queue"
            )

    def _choose_a_comparison(self) -> None:
        """ "Models disagree" needs a second model: take the first the switcher offers."""
        box = self.switcher.compare_box
        if box.count() > 1:
            box.setCurrentIndex(1)
            self.compare_with(box.itemData(1))
            self._say(f"Comparing with {box.itemText(1)} (change it under 'Compare with')")

    def _update_counts(self) -> None:
        counts = self.results.counts()
        self.counts_label.setText("  " + str(counts) + "  ")
        self.switcher.set_coverage(
            self.results.unscored(), counts.total - counts.errors, self._unscanned
        )

    # --- review -----------------------------------------------------------------------

    def decide(self, label: str | None) -> None:
        if self.care.break_showing:  # the break reminder waits for an acknowledgement
            self._say("Take a break first: press Return (or the button) to continue")
            return
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        if not rows and self.grid.currentIndex().isValid():
            rows = [self.grid.currentIndex().row()]
        items, refused = [], []
        unlabelled = 0  # cleared when never labelled: no decision for the log to carry
        groups = 0  # collapsed group tiles among them: each labels every file it stands for
        for row in rows:
            members = self.results.group_members(row)
            if members:
                groups += 1
                items.extend(self._group_items(members))
                continue
            index = self.results.index(row)
            digest = index.data(Role.HASH)
            if digest and label is None and index.data(Role.LABEL) is None:
                unlabelled += 1
            elif digest and not index.data(Role.ERROR):
                score = index.data(Role.SCORE)  # no score: no model said anything
                model_id = self.model_id if score is not None else None
                items.append(DecisionInput(digest, model_id, score, index.data(Role.PATH)))
            else:
                refused.append(row)
        self._moved = True
        notes = [] if rows else ["Nothing to label: select an image first"]
        if unlabelled and not items:
            notes.append("Nothing to clear: not labelled")
        if refused:
            notes.append(self._not_labellable_text(refused, labelled=len(items)))
        if not items:
            self._say(" · ".join(notes))
            return
        if groups:  # one decision per content, however many tiles or copies hold it
            items = list({item.hash: item for item in reversed(items)}.values())[::-1]
        last_path = self.results.index(rows[-1]).data(Role.PATH)
        self._push_decision(items, label)
        copies = self._copies_text(label, items)
        if groups:
            notes.insert(0, self._group_text(label, items, groups))
        elif copies:
            notes.insert(0, copies)
        if self.settings.auto_advance:
            position = self.results.row_of(last_path)
            if position is None:  # filtered away by its new label: stay at the same place
                position = min(rows[-1] - len(rows), self.results.rowCount() - 2)
            following = (
                self._next_in_queue(position + 1)  # the review queue: unreviewed items only
                if self.results.sort == "uncertain"
                else self._next_labellable(position + 1)  # error tiles take no label
            )
            if following is None:  # the end of the view: stay on an image, say what is left
                following = self._last_labellable(min(position + 1, self.results.rowCount() - 1))
                notes.append(self._end_of_view_text())
            self._select_row(following)
        else:
            self._show_detail()
        if notes:
            self._say(" · ".join(notes))
        else:
            self.statusBar().clearMessage()  # an earlier decision's note no longer applies
        self._drop_offer()
        if len(items) == 1 and label is not None:
            self._offer_near_duplicates(items[0].hash, label, items[0].source_path)

    # --- near-duplicates ------------------------------------------------------------------

    def _drop_offer(self) -> None:
        """Moving on (or a new decision) dismisses the offer, and any offer still on its way."""
        self._near_serial += 1
        self.offer.dismiss()

    def _on_current_moved(self) -> None:
        if self._current_path() != self._offer_anchor:
            self._drop_offer()

    def _offer_near_duplicates(self, content_hash: str, label: str, source) -> None:
        """Offer `source`'s unlabelled near-duplicates for `label`, while the item current
        now (auto-advance may have moved on to one of them) stays current."""
        if self.folder is None:
            return
        anchor = self._offer_anchor = self._current_path()
        serial = self._near_serial
        name = (
            shown_name(source.name) if isinstance(source, Path) else self._offer_name(content_hash)
        )

        def found(hashes: list[str]) -> None:
            if serial != self._near_serial or self._current_path() != anchor:
                return  # the moderator moved on before the answer came
            unlabelled = [
                h for h in hashes if self.results.label_of(h) is None and self.results.item_of(h)
            ]
            if unlabelled:
                names = [self._offer_name(h) for h in unlabelled]
                this = [n for n in names if n == THIS_ONE]
                names = this + [n for n in names if n != THIS_ONE]  # the one in view first
                self.offer.offer(label, unlabelled, source=name, names=names)

        self.near.find(self.folder, content_hash, found)

    def _offer_name(self, content_hash: str) -> str:
        """A near-duplicate as the offer names it: "this one" when it is the current item."""
        index = self.grid.currentIndex()
        if index.isValid() and index.data(Role.HASH) == content_hash:
            return THIS_ONE
        found = self.results.item_of(content_hash)
        return shown_name(found[0].name) if found else content_hash[:12]

    def _accept_offer(self) -> None:
        """Y: label exactly the near-duplicates the offer named, and only while the item
        that was current when it appeared still is (the offer is about that moment)."""
        label, hashes, source = self.offer.label, self.offer.hashes, self.offer.source
        if self._current_path() != self._offer_anchor or label is None:
            self._say(f"Nothing labelled: the offer for {source or 'that image'} was withdrawn")
            return
        still = [h for h in hashes if self.results.label_of(h) is None]  # still unlabelled
        pushed = self._label_hashes(still, label)
        skipped = len(hashes) - pushed
        note = f" ({skipped:,} labelled meanwhile, left as they are)" if skipped else ""
        if pushed:
            self._say(
                f"Labelled {pushed} near-duplicate{'s' if pushed != 1 else ''} of "
                f"{source or 'that image'} {label}{note}"
            )
        elif skipped:
            self._say("Nothing to label: the near-duplicates were labelled meanwhile")

    def label_group(self, label: str) -> None:
        """Label the current item and all its near-duplicates in the folder: one undoable step."""
        index = self.grid.currentIndex()
        digest = index.data(Role.HASH) if index.isValid() else None
        if self.folder is None or not digest or index.data(Role.ERROR):
            self._say("Nothing to label: select an image first")
            return
        self._moved = True
        self._drop_offer()
        folder = self.folder

        def found(hashes: list[str]) -> None:
            # Asked for explicitly: done also when the moderator moved on meanwhile (the
            # current item keeps its place), not once another folder is open.
            if self.folder != folder:
                self._say(f"Nothing labelled: {folder.name} was closed before the lookup ended")
                return
            near = [h for h in hashes if h != digest and self.results.item_of(h)]
            self._label_hashes([digest, *near], label)
            self._say(
                f"Labelled {label}: this and {len(near)} near-duplicate"
                f"{'s' if len(near) != 1 else ''} (Ctrl+Z undoes them together)"
            )

        self.near.find(self.folder, digest, found)

    def _label_hashes(self, hashes: list[str], label: str | None) -> int:
        """One undoable step labelling these contents (each once); how many it labelled."""
        items = []
        for digest in dict.fromkeys(hashes):
            found = self.results.item_of(digest)
            if found is None:
                continue
            path, score = found
            model_id = self.model_id if score is not None else None
            items.append(DecisionInput(digest, model_id, score, path))
        if not items:
            return 0
        self._push_decision(items, label)
        return len(items)

    def _group_items(self, members: list) -> list[DecisionInput]:
        """Decision inputs for the files a collapsed group tile stands for (error files and
        files without a content hash take no label)."""
        items = []
        for outcome in members:
            if outcome.hash and not outcome.error:
                model_id = self.model_id if outcome.score is not None else None
                items.append(DecisionInput(outcome.hash, model_id, outcome.score, outcome.path))
        return items

    def _group_text(self, label: str | None, items: list[DecisionInput], groups: int) -> str:
        done = {"unsafe": "Labelled unsafe", "safe": "Labelled safe"}.get(label, "Cleared")
        files = sum(self.results.copies_of(item.hash) for item in items)
        what = "a group" if groups == 1 else f"{groups:,} groups"
        return (
            f"{done}: {what} of {files:,} file{'s' if files != 1 else ''} "
            f"(Ctrl+Z undoes {'it' if files == 1 else 'them'} together)"
        )

    def _copies_text(self, label: str | None, items: list[DecisionInput]) -> str:
        """Labels follow the content: say so when a decision covers more files than chosen."""
        hashes = {item.hash for item in items}
        files = sum(self.results.copies_of(h) for h in hashes)
        if files <= len(items):
            return ""
        done = {"unsafe": "Marked unsafe", "safe": "Marked safe"}.get(label, "Cleared")
        chosen = f"{len(items):,} item{'s' if len(items) != 1 else ''}"
        return f"{done}: {chosen}, {files:,} files (copies share a label)"

    def _push_decision(self, items: list[DecisionInput], label: str | None) -> None:
        """One undoable step for `items`: shown at once, committed by the writer thread."""
        command = DecisionCommand(
            self.writes,
            items,
            label,
            previous={i.hash: self.results.label_of(i.hash) for i in items},
            reviewer=self.settings.reviewer,
            threshold=self.results.threshold,
            on_change=self._labels_changed,
        )
        if label is not None:
            threshold = self.results.threshold
            self.care.decided(sum(i.score is not None and i.score >= threshold for i in items))
        else:
            self.care.activity()
        self._pushing = True
        try:
            self.undo_stack.push(command)  # push runs redo(): shown now, committed by the writer
        finally:
            self._pushing = False

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
        self.ai_labels.load()  # an AI-generated label may be what failed
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
        self._moved = True
        row = self.grid.currentIndex().row()
        self._select_row(max(0, min(self.results.rowCount() - 1, row + step)))

    def _set_auto_advance(self, on: bool) -> None:
        self.settings.auto_advance = on

    # --- the moderator's flow: queue, filter keys, empty grid, feedback -------------------

    def _build_flow(self) -> None:
        """The remaining count, the empty-grid hint and undo/redo feedback (gui/flow.py)."""
        self.remaining_label = QLabel()
        self.remaining_label.setObjectName("remaining")
        self.remaining_label.setContentsMargins(12, 0, 4, 0)
        self.remaining_label.setToolTip(
            "Items in this view that can be labelled and have no label yet (N: the next one)"
        )
        self.statusBar().addPermanentWidget(self.remaining_label)
        self.empty_hint = EmptyGridHint(self.grid.viewport())
        self.empty_hint.clear_requested.connect(lambda: self.set_filter("all"))
        # Many grid changes come at once (a batch inserts row by row): count once after them.
        self._view_timer = QTimer(self, singleShot=True, interval=0)
        self._view_timer.timeout.connect(self._refresh_view_state)
        for signal in (
            self.results.modelReset,
            self.results.layoutChanged,
            self.results.rowsInserted,
            self.results.rowsRemoved,
            self.results.dataChanged,
        ):
            signal.connect(lambda *_: self._view_timer.start())
        self._undo_index = self.undo_stack.index()
        self.undo_stack.indexChanged.connect(self._on_undo_index)
        self._refresh_view_state()

    def _build_filter_actions(self, menu) -> None:
        """Alt+1 … Alt+9 pick the first nine Show filters, in the toolbar's order; Alt+0
        Conflicts (grid.FILTER_KEYS)."""
        group = QActionGroup(self)
        self.filter_actions: dict[str, QAction] = {}
        for key, text in FILTERS.items():
            action = QAction(f"Show {text}", self, checkable=True)
            if key in FILTER_KEYS:  # the others (AI-generated, assigned) are in the menu
                action.setShortcut(QKeySequence(FILTER_KEYS[key]))
            action.setChecked(key == self.results.filter)
            action.triggered.connect(lambda _=False, k=key: self.set_filter(k))
            group.addAction(action)
            menu.addAction(action)
            self.addAction(action)
            self.filter_actions[key] = action

    def _show_filter(self, name: str) -> None:
        """Keep the combo box and the menu on the filter in force, however it was chosen."""
        if name in self.filter_actions:
            self.filter_actions[name].setChecked(True)
        else:  # a detector's filter (gui/detectors_view.py): no menu entry is checked
            for action in self.filter_actions.values():
                action.setChecked(False)
        self.filter_box.blockSignals(True)
        self.filter_box.setCurrentIndex(max(0, self.filter_box.findData(name)))
        self.filter_box.blockSignals(False)

    def _refresh_view_state(self) -> None:
        """Say why an empty grid is empty, and how many items this view has left to review."""
        if self.results.rowCount():
            self.empty_hint.show_message(None)
        elif self._scan_stopped and not self.scanning and not self.results.counts().total:
            self.empty_hint.show_message(f"The scan stopped: {self._scan_stopped} · F5 tries again")
        else:
            total = self.results.counts().total
            self.empty_hint.show_message(
                *empty_grid_message(self.folder, self.scanning, total, self.results.filter)
            )
        left = self.results.unreviewed_files()  # files: a collapsed group's members count
        self.remaining_label.setText(f"{left:,} left in this view")
        self.remaining_label.setVisible(self.folder is not None)

    def _say(self, text: str) -> None:
        """Feedback on what a key did; it stays a few seconds even while a scan reports."""
        self.statusBar().showMessage(text, 6000)

    def next_unreviewed(self) -> None:
        """Go to the next labellable item without a label in the grid's order, wrapping."""
        self._moved = True
        queue = self.results.unreviewed_positions()
        if not len(queue):
            self._say(self._nothing_left_text("Nothing left to review in this view"))
            return
        after = queue[queue > self.grid.currentIndex().row()]
        self._select_row(int(after[0] if len(after) else queue[0]))

    def _next_in_queue(self, start: int) -> int | None:
        """The first unreviewed labellable item at or after `start` in the grid's order."""
        queue = self.results.unreviewed_positions()
        after = queue[queue >= start]
        return int(after[0]) if len(after) else None

    def review_uncertain(self, *, only_unreviewed: bool = False) -> None:
        """The review queue: items the shown model is least sure about (score nearest the
        threshold) first; N and auto-advance follow it, skipping reviewed items."""
        if only_unreviewed:
            self.set_filter("unreviewed")
        self.set_sort("uncertain")
        self.sort_box.blockSignals(True)
        self.sort_box.setCurrentIndex(list(SORTS).index("uncertain"))
        self.sort_box.blockSignals(False)
        self._moved = True
        queue = self.results.unreviewed_positions()
        if not len(queue):
            self._say(self._nothing_left_text("Nothing left to review in this view"))
            return
        self._select_row(int(queue[0]))
        self._say(
            f"Review queue: {len(queue):,} unreviewed items, the scores nearest the threshold "
            f"({self.results.threshold:.2f}) first"
        )

    def _next_labellable(self, start: int) -> int | None:
        for position in range(max(0, start), self.results.rowCount()):
            if self.results.labellable(position):
                return position
        return None

    def _last_labellable(self, position: int) -> int:
        """The nearest item at or before `position` that can take a label, else `position`."""
        for before in range(position, -1, -1):
            if self.results.labellable(before):
                return before
        return position

    def _nothing_left_text(self, text: str) -> str:
        """`text`, and how many files a filter hides that still wait for a label: "nothing
        left" under Disagreements read as if the folder were done."""
        counts = self.results.counts()
        elsewhere = counts.total - counts.errors - counts.reviewed
        if elsewhere <= 0 or self.results.filter == "all":
            return text
        return (
            f"{text} · {elsewhere:,} not reviewed outside '{FILTERS[self.results.filter]}' "
            f"({FILTER_KEYS['all']} shows all)"
        )

    def _end_of_view_text(self) -> str:
        left = self.results.unreviewed_files()
        if not left:
            return self._nothing_left_text("Everything in this view is reviewed")
        return f"End of this view: {left:,} left to review (N goes to the next)"

    def _not_labellable_text(self, rows: list[int], *, labelled: int) -> str:
        first = self.results.index(rows[0])
        why = why_not_labellable(first.data(Role.PATH).name, first.data(Role.ERROR))
        if len(rows) == 1 and not labelled:
            return why
        what = "1 item" if len(rows) == 1 else f"{len(rows):,} items"
        if labelled:
            what += " was left out:" if len(rows) == 1 else " were left out, for example"
            return f"{what} {why}"
        return f"{what} can't be labelled, for example {why}"

    def _on_undo_index(self, index: int) -> None:
        """After an undo or redo, select what it changed and say what it did."""
        before, self._undo_index = self._undo_index, index
        if self._pushing or index == before:
            return
        undid = index < before
        command = self.undo_stack.command(index if undid else index - 1)
        from nsfw_desk.gui.ai_label import AiLabelCommand

        if not isinstance(command, DecisionCommand | AiLabelCommand):
            return
        self._moved = True
        paths = [Path(item.source_path) for item in command.items if item.source_path]
        self._select_paths(paths)
        text = f"{'Undid' if undid else 'Redid'}: {command.text()}"
        # The undo history outlives a change of folder: say where such an item is, not
        # that this view's filter hides it.
        here = [p for p in paths if self.folder is not None and p.is_relative_to(self.folder)]
        hidden = self.results.hidden_among(here)  # a collapsed group's members are shown
        if hidden:
            which = "" if len(paths) == 1 else f"{hidden:,} of {len(paths):,} "
            text += f" · {which}not shown in this view ('{FILTERS[self.results.filter]}')"
        elsewhere = [p for p in paths if p not in here]
        if elsewhere:
            which = "" if len(paths) == 1 else f"{len(elsewhere):,} of {len(paths):,} "
            text += f" · {which}in another folder: {elsewhere[0].parent}"
        self._say(text)

    def _select_paths(self, paths: list[Path]) -> int:
        """Select the visible ones of `paths`, the first as current; returns how many."""
        positions = sorted(self.results.positions_of(paths))
        if not positions:
            return 0
        selection = QItemSelection()
        start = previous = positions[0]
        for position in [*positions[1:], None]:
            if position is not None and position == previous + 1:
                previous = position
                continue
            selection.select(self.results.index(start), self.results.index(previous))
            if position is not None:
                start = previous = position
        model = self.grid.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        model.setCurrentIndex(self.results.index(positions[0]), flags.NoUpdate)
        model.select(selection, flags.ClearAndSelect)
        self.grid.scrollTo(self.results.index(positions[0]))
        self._show_detail()
        return len(positions)

    def _select_all(self) -> None:
        self._moved = True
        self.grid.selectAll()

    def _pin_first(self) -> None:
        """Make the first item current and alone selected, unless it already is.

        Without scrolling: a moderator who scrolls to look, without choosing, keeps the view.
        """
        if not self.results.rowCount():
            return
        current = self.grid.currentIndex()
        selection = self.grid.selectionModel()
        if (
            current.row() == 0
            and selection.isSelected(current)
            and len(selection.selectedIndexes()) == 1
        ):
            return
        self.grid.setAutoScroll(False)
        try:
            selection.setCurrentIndex(
                self.results.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
        finally:
            self.grid.setAutoScroll(True)
        self._show_detail()

    def _acting(self, action):
        """An action on the current item (a note, tags) is the moderator's choice of it: the
        grid stops pinning its first item, as after a decision."""

        def act() -> None:
            self._moved = True
            action()

        return act

    def _note_moderator_move(self, watched: QObject, event: QEvent) -> None:
        """A key or click in the grid is the moderator moving: stop pinning the first item."""
        kind = event.type()
        if watched is self.grid and kind == QEvent.Type.KeyPress:
            if event.key() not in _MODIFIER_KEYS:
                self._moved = True
        elif watched is self.grid.viewport() and kind == QEvent.Type.MouseButtonPress:
            self._moved = True

    def _scan_summary_text(self, summary) -> str:
        # A head-only model scores from the base model's stored embeddings: say so, as the
        # CLI does, since those items were not decoded again.
        via = (
            f" · {summary.from_embeddings:,} scored from stored embeddings (no decoding)"
            if summary.from_embeddings
            else ""
        )
        if summary.decoded_on_device:  # core/gpu_prepare.py: JPEGs decoded by the GPU
            via += f" · {summary.decoded_on_device:,} JPEGs decoded on the GPU"
        if summary.cancelled:
            return (
                f"Stopped after {summary.reached:,} of {summary.files:,} files · "
                f"{summary.scored:,} new{via} · {count(summary.errors, 'error')} · "
                "F5 scans the rest"
            )
        return (
            f"Scanned: {count(summary.files, 'file')} in {summary.elapsed_s:.1f} s · "
            f"{summary.scored:,} new{via} · {count(summary.errors, 'error')}"
        )

    # --- reveal, hide, zoom -----------------------------------------------------------

    def _reveal_current(self, on: bool) -> None:
        digest = self.grid.currentIndex().data(Role.HASH) if on else None
        refused = self.care.may_reveal(digest) if digest else None
        if refused:  # the day's cap in Settings: stay blurred and say why
            self._say(refused)
            on, digest = False, None
        self.care.revealing(digest)
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
        if self.offer.isVisible() and kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            # While the offer shows, Y accepts and Esc dismisses it (not "Hide all images").
            key, plain = event.key(), event.modifiers() == Qt.KeyboardModifier.NoModifier
            if plain and key in (Qt.Key.Key_Y, Qt.Key.Key_Escape):
                if kind == QEvent.Type.KeyPress and key == Qt.Key.Key_Y:
                    self.offer.accept()
                elif kind == QEvent.Type.KeyPress:
                    self.offer.dismiss()
                event.accept()
                return True
        if (
            kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease)
            and event.key() == Qt.Key.Key_Space
        ):
            if not event.isAutoRepeat():
                self._reveal_current(kind == QEvent.Type.KeyPress)
            return True
        if (
            kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress)
            and self.similar.active
            and event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Backspace)
        ):
            # In a "similar" view Esc and Backspace go Back (not Hide all / Clear label).
            event.accept()
            if kind == QEvent.Type.KeyPress:
                self.similar.back()
            return True
        self._note_moderator_move(watched, event)
        if watched is self.grid.viewport():
            left = getattr(event, "button", lambda: None)() == Qt.MouseButton.LeftButton
            if kind == QEvent.Type.MouseButtonPress and left:
                self._hold.start()  # press and hold on a tile reveals it
            elif kind == QEvent.Type.MouseButtonRelease:
                if (
                    left
                    and not self.delegate.revealed
                    and self.grouping.badge_clicked(event.position().toPoint())
                ):
                    self._hold.stop()
                    return True
                self._hold.stop()
                if self.delegate.revealed:
                    self._reveal_current(False)
        return super().eventFilter(watched, event)

    def _tile_menu(self, position) -> None:
        """The tile's context menu: what the keys do, on the tile under the pointer."""
        index = self.grid.indexAt(position)
        if not index.isValid():
            return
        if not self.grid.selectionModel().isSelected(index):
            self._select_row(index.row())
        menu = QMenu(self)
        menu.addAction(self.similar_action)
        if self.similar.active:
            menu.addAction("Back (Esc/Backspace)", self.similar.back)
        menu.addSeparator()
        menu.addAction("Mark unsafe (U)", lambda: self.decide("unsafe"))
        menu.addAction("Mark safe (S)", lambda: self.decide("safe"))
        group = index.data(Role.GROUP)
        if group is not None:
            menu.addSeparator()
            if group[1]:
                menu.addAction("Expand this group (+)", lambda: self.grouping.expand_current(True))
            else:
                menu.addAction(
                    "Collapse this group (-)", lambda: self.grouping.expand_current(False)
                )
        menu.exec(self.grid.viewport().mapToGlobal(position))

    # --- loupe and shortcut sheet -------------------------------------------------------

    def _build_loupe(self) -> None:
        """The loupe takes the whole central area (grid and detail pane) while it is open.

        The splitter is moved into a stack as a whole: reparenting the grid alone changed the
        order in which Qt destroys widgets at exit and crashed PySide's cleanup.
        """
        self.loupe = Loupe(self.thumbnails, HOLD_TO_REVEAL_MS)
        self.view_stack = QStackedWidget()
        self.desk_page = self.takeCentralWidget()  # the model bar, grid and detail pane
        self.view_stack.addWidget(self.desk_page)
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
        self._action(menu, "Open in the lou&pe", self._open_loupe_key, ["Return", "Enter"])
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
        self.view_stack.setCurrentWidget(self.desk_page)
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
    def _keeping_current(self, *, if_gone: str = ""):
        """Re-sort, re-filter or reload the grid without losing the moderator's place.

        `if_gone`, for when the current item leaves the view: "place", the item now at its
        place becomes current, as auto-advance does (a decision resolved its conflict, its
        tag came off under the Tag filter); "first", the view's first item (another Show
        filter). Either way the next key has an image to act on."""
        current = self._current_path()
        was_at = self.grid.currentIndex().row()
        yield
        gone = current is not None and self.results.row_of(current) is None
        if self._moved and gone and if_gone:
            at = max(was_at, 0) if if_gone == "place" else 0
            self._select_row(min(at, self.results.rowCount() - 1))
        elif self._moved:
            self._select_path(current)
        else:
            self._pin_first()  # until the moderator moves, the top of the grid is current
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
        else:  # not in this view: the pane shows what the grid has current, if anything
            self._show_detail()

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
        # A file that failed to scan has no row in the library's files, only the size the
        # scan saw (an empty or cut-short file is worth knowing as such).
        tile_facts = {"size": index.data(Role.SIZE)}
        self.detail.show_item(
            path,
            digest,
            facts=tile_facts,
            scores={self.model_id: score} if self.model_id and score is not None else {},
            label=label,
            error=error,
            tags=self.results.tags.get(digest, ()) if digest else (),
            model_names=self.model_names,
            ai_generated=index.data(Role.AI_LABEL),
        )
        self.heat_maps.current_changed()
        # Facts, every model's score and the history come from the read thread.
        self._detail_serial += 1
        serial = self._detail_serial

        def read(library):
            scores = library.scores_by_model(digest) if digest else {}
            return (
                library.file_facts(path),
                scores,
                ReviewStore(library).history(digest) if digest else [],
                library.model_names(scores),
                {m: library.score_details(digest, m) for m in scores} if digest else {},
            )

        def show(found) -> None:
            if serial != self._detail_serial:
                return  # the moderator has moved on
            facts, scores, history, names, details = found
            self.model_names.update(names)
            current = self.grid.currentIndex()
            self.detail.show_item(
                path,
                digest,
                facts=facts or tile_facts,
                scores=scores,
                label=current.data(Role.LABEL) if current.isValid() else label,
                error=error,
                history=history,
                tags=self.results.tags.get(digest, ()) if digest else (),
                model_names=self.model_names,
                details=details,
                ai_generated=current.data(Role.AI_LABEL) if current.isValid() else None,
            )

        self.reads.query(read, show)

    # --- settings, recent folders, drag and drop, window state --------------------------

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self, in_use=self._model_in_use())
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return
        new = dialog.result_settings()
        model_changed = (new.model, new.device, new.batch_size, new.detector_specs()) != (
            self.settings.model,
            self.settings.device,
            self.settings.batch_size,
            self.settings.detector_specs(),
        )
        style_changed = (new.blur_strength, new.grayscale) != (
            self.settings.blur_strength,
            self.settings.grayscale,
        )
        self.settings = new
        if new.detectors and new.detector_specs()[0][1] != self.results.threshold:
            self.spin.setValue(new.detector_specs()[0][1])  # the primary's threshold
        with self._keeping_current():
            self.results.set_flag_rule(new.flag_rule)
        self.detectors_view.load()
        self.care.settings_changed()
        self.team.reload()  # another reviewer name: other assigned items
        self.auto_advance_action.setChecked(new.auto_advance)
        self.grayscale_action.setChecked(new.grayscale)
        if style_changed:
            self.thumbnails.set_style(new.blur_strength, new.grayscale)
            self.grid.viewport().update()
            self.detail.set_revealed(False)
            self.loupe.reload()
        if model_changed:
            self.model_override = self.device_override = self.switched_spec = None
        self._save_settings()
        if model_changed and self.folder is not None:
            self._start_scan()

    def _set_grayscale(self, on: bool) -> None:
        """View → Grayscale thumbnails: the same setting as in Settings, one key away."""
        if on == self.settings.grayscale:
            return
        self.settings.grayscale = on
        self.thumbnails.set_style(self.settings.blur_strength, on)
        self.grid.viewport().update()
        self.detail.set_revealed(False)
        self._save_settings()

    def _model_in_use(self) -> str:
        """What the Settings dialog says is scoring now, and where that choice came from."""
        name = self.model_name(self.model_id)
        if self.switched_spec is not None:  # what _model_spec loads first: not Settings
            return f"{name or self.switched_spec} (chosen in Scores from, for this run)"
        if self.model_override is not None:
            return f"{name or self.model_override} (from --model, for this run)"
        if name is None:
            return "none loaded yet"
        if self.settings.detectors:
            return f"{name} (the primary detector, from Settings → Detectors)"
        return f"{name} (from Settings)" if self.settings.model else f"{name} (the default)"

    def open_export(self) -> None:
        from nsfw_desk.gui.export_dialog import ExportDialog  # loaded when first needed

        ExportDialog(
            self.library_path, self.folder, self.settings.reviewer, self, reads=self.reads
        ).exec()

    def open_calibration(self) -> None:
        from nsfw_desk.gui.calibration import CalibrationDialog  # QtCharts: only when asked

        dialog = CalibrationDialog(self.reads, self.results.threshold, self.model_id, self)
        dialog.threshold_applied.connect(lambda value: self._apply_calibrated(dialog, value))
        dialog.exec()

    def _apply_calibrated(self, dialog, value: float) -> None:
        """A calibrated threshold goes to the detector it was computed for (issue 13)."""
        model_id = dialog.model_box.currentData()
        if model_id is not None and self.results.detector_threshold(model_id) is not None:
            self.detectors_view.set_threshold(model_id, value)
        else:
            self.spin.setValue(value)

    def open_training(self):
        """Review → Train from my decisions… (gui/train_dialog.py); returns the dialog."""
        from nsfw_desk.gui.train_dialog import TrainDialog

        if self.train_dialog is not None and self.train_dialog.isVisible():
            self.train_dialog.raise_()
            return self.train_dialog
        choice = self.switcher.choices.get(self.model_id or "")
        spec = choice.spec if choice and choice.spec else self._model_spec()
        dialog = TrainDialog(
            self.library_path,
            base_spec=spec or None,
            base_name=self.model_name(self.model_id) or "the default model",
            models_dir=self.library_path.parent / "models",
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.model_trained.connect(self._on_model_trained)
        dialog.review_requested.connect(lambda: self.review_uncertain(only_unreviewed=True))
        dialog.destroyed.connect(lambda *_: setattr(self, "train_dialog", None))
        self.train_dialog = dialog
        self.reads.query(lambda library: ReviewStore(library).counts(), dialog.set_counts)
        dialog.open()
        return dialog

    def _on_model_trained(self, result) -> None:
        """A model trained here becomes the one the grid shows (its scores, if any, are in
        the library already: a head-only model's come from the stored embeddings)."""
        self.switched_spec = str(result.out)
        self._score_trained = result.model_id
        self._hand_over_flagging(result)
        if self.folder is None or result.model_id == self.model_id:
            self.model_id = result.model_id
            self.refresh_models()
            return
        if self.scanning:  # its results are the scanning model's: switch once it stops
            self._switch_after_scan = result.model_id
            self.stop_scan()
            return
        self.switch_model(result.model_id)

    def _is_settings_primary(self, spec: str | None) -> bool:
        """Whether `spec` is what a scan loads anyway (the first enabled detector, no
        --model): choosing it in Scores from is then no choice for this run only."""
        from nsfw_desk.core.detector_columns import same_spec

        if spec is None or self.model_override is not None or not self.settings.detectors:
            return False
        return same_spec(self.settings.detector_specs()[0][0], spec)

    def _hand_over_flagging(self, result) -> None:
        """With several detectors, the trained model flags in place of its base (which
        flagged on under "any detector" what the moderator had corrected); the base stays
        in Settings → Detectors, turned off, and the desk says so."""
        from nsfw_desk.core.detector_columns import hand_over

        dialog = self.train_dialog
        base = dialog.base_spec if dialog is not None else None
        base_name = dialog.base_label.text() if dialog is not None else base
        if not self.settings.detectors:
            if self.model_override is not None:  # --model: Settings are not this run's
                return
            # One model: the trained one is Settings' model from now on (a restart kept
            # the base, which flagged again what the moderator had corrected).
            before = self.settings.model or "the default model"
            self.settings.model = str(result.out)
            self.switched_spec = None
            self._save_settings()
            text = (
                f"{Path(result.out).name} is now the model in Settings, in place of "
                f"{base_name or before}; Settings → Model goes back."
            )
        else:
            handed = hand_over(self.settings.detectors, base, str(result.out)) if base else None
            if handed is None:
                return
            self.settings.detectors = handed
            self._save_settings()
            if self._is_settings_primary(self.switched_spec):
                self.switched_spec = None  # the primary detector from Settings, not this run's
            text = (
                f"{Path(result.out).name} now flags in place of {base_name}, which stays in "
                "Settings → Detectors, turned off: turn it on there to have both flag."
            )
        self._say(text)
        if dialog is not None:  # first: the summary box shows its top lines
            dialog.summary.setPlainText(f"{text}\n{dialog.summary.toPlainText()}")

    def open_log_folder(self) -> None:
        from nsfw_desk.applog import log_dir

        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def show_about(self) -> None:
        from nsfw_desk.gui.about import show_about

        show_about(self, self.model_name(self.model_id), self.device_text)

    def _say_not_a_folder(self, folder: Path) -> None:
        """A folder from Open recent that is gone can be taken off the list there and then;
        its stored results and decisions stay in the library."""
        if str(folder) not in self.settings.recent_folders or folder.exists():
            QMessageBox.warning(self, "Not a folder", f"{folder} is not a folder.")
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Folder not found",
            f"{folder} is not there any more (deleted, renamed, or its drive not "
            "connected?). Its results and decisions stay in the library.",
            parent=self,
        )
        remove = box.addButton("Remove from Open recent", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Keep", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is remove:
            self.settings.forget_recent(folder)
            self._settings_timer.start()
            self._fill_recent()

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

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().changeEvent(event)
        grouping = getattr(self, "grouping", None)
        activated = event.type() == QEvent.Type.ActivationChange and self.isActiveWindow()
        if grouping is not None and activated:  # back from a terminal: a list imported?
            grouping.match_if_changed()

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
        self._settings_timer.stop()
        self._save_settings()
        self.care.flush()  # the day's counters go in with the decisions
        if self.writes.waiting and not self._wait_for_writes():
            event.ignore()
            return
        if self.train_dialog is not None:
            self.train_dialog.task.stop()  # a run stops at its next step; its checkpoint stays
        self.worker.stop()
        self.grouping.stop()
        self.heat_maps.stop()
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
            waiting = self.writes.decisions_waiting  # today's care counters aside
            text = (
                f"Saving {waiting:,} decision{'s' if waiting != 1 else ''} to the library…"
                if waiting
                else "Saving today's review counters to the library…"
            )
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
