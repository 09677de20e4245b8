"""The settings dialog: model, detectors, device, precision, batch size, blur, reviewer,
auto-advance."""

from __future__ import annotations

import dataclasses

from PIL import Image, ImageDraw
from PySide6.QtCore import QEvent, QRect, Qt
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from nsfw_desk.core.defaults import BATCH_SIZE, CUDA_BATCH_SIZE
from nsfw_desk.core.hub import DEFAULT_MODEL
from nsfw_desk.core.images import THUMBNAIL_SIZE
from nsfw_desk.core.precision import PRECISIONS
from nsfw_desk.core.runtime import DEVICES
from nsfw_desk.core.settings import Settings
from nsfw_desk.gui import file_dialogs
from nsfw_desk.gui.thumbnails import blur, to_qimage
from nsfw_desk.gui.tiles import draw_fitted
from nsfw_desk.synthetic import synthetic_photo


def sample_picture() -> Image.Image:
    """A harmless generated picture with edges and small text, so the blur strength shows;
    as big as a stored thumbnail, which is what the grid blurs."""
    image = synthetic_photo((THUMBNAIL_SIZE, THUMBNAIL_SIZE * 3 // 4), seed=7)
    draw = ImageDraw.Draw(image)
    draw.ellipse((24, 30, 110, 116), fill=(235, 190, 60), outline=(40, 40, 40), width=4)
    for i in range(6):
        x = 140 + i * 16
        draw.rectangle((x, 30, x + 7, 150), fill=(20, 60, 150) if i % 2 else (240, 240, 240))
    draw.text((26, 150), "Aa 123 sample", fill=(0, 0, 0))
    return image


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent=None, *, in_use: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.model = QLineEdit(settings.model)
        self.model.setPlaceholderText(f"{DEFAULT_MODEL} (default)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        model_row = QWidget()
        row = QHBoxLayout(model_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.model, 1)
        row.addWidget(browse)

        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setCurrentText(settings.device)
        self.precision = QComboBox()
        self.precision.addItems(list(PRECISIONS))
        self.precision.setCurrentText(settings.precision)
        self.precision.setToolTip(
            "auto: on the CPU the fastest mode `nsfw-desk bench` measured within the flip "
            "budget on this machine, else bf16 or fp32; fp16 on CUDA (README: Precision)"
        )
        self.batch_size = QSpinBox(minimum=0, maximum=512, value=settings.batch_size)
        self.batch_size.setSpecialValueText("auto")  # 0
        self.batch_size.setToolTip(
            f"Images per forward pass. auto: {BATCH_SIZE} on the CPU (measured by "
            f"`nsfw-desk bench`), {CUDA_BATCH_SIZE} on CUDA"
        )
        self.blur = QSlider(
            Qt.Orientation.Horizontal, minimum=1, maximum=32, value=settings.blur_strength
        )
        self.grayscale = QCheckBox("Show thumbnails in grayscale", checked=settings.grayscale)
        self.preview = QLabel()
        self.preview.setToolTip("A generated sample, blurred as the grid will paint thumbnails")
        self._tile = settings.thumbnail_size
        self._sample = sample_picture()
        self.blur.valueChanged.connect(self._update_preview)
        self.grayscale.toggled.connect(self._update_preview)
        self._update_preview()
        self.reviewer = QLineEdit(settings.reviewer)
        self.auto_advance = QCheckBox(
            "Move to the next image after a decision", checked=settings.auto_advance
        )

        form = QFormLayout(self)
        form.addRow("Model (hub id or folder)", model_row)
        # The field holds the saved choice; a --model for this run or the default is not
        # in it, so say which model actually scores now.
        self.in_use = QLabel(f"In use: {in_use}" if in_use else "")
        self.in_use.setObjectName("model_in_use")
        self.in_use.setWordWrap(True)
        self.in_use.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if in_use:
            form.addRow("", self.in_use)
        self.detectors = DetectorsEditor(settings)
        form.addRow("Detectors", self.detectors)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Blur strength", self.blur)
        form.addRow("", self.grayscale)
        form.addRow("Preview", self.preview)
        form.addRow("Reviewer name", self.reviewer)
        form.addRow("", self.auto_advance)
        # Care for the reviewer (gui/care.py)
        self.break_minutes = QSpinBox(minimum=0, maximum=240, value=settings.break_minutes)
        self.break_minutes.setSuffix(" min")
        self.break_minutes.setSpecialValueText("never")
        self.break_minutes.setToolTip("Dim the grid with a reminder after this much review")
        self.max_reveals = QSpinBox(minimum=0, maximum=100_000, value=settings.max_reveals_per_day)
        self.max_reveals.setSpecialValueText("no cap")
        self.max_reveals.setToolTip("Refuse reveals (Space) past this many a day")
        form.addRow("Break reminder after", self.break_minutes)
        form.addRow("Reveals per day at most", self.max_reveals)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._base = settings

    def preview_image(self) -> QImage:
        """The sample at the slider's strength and the grayscale choice, painted in a
        thumbnail's square exactly as the grid paints a tile's image."""
        blurred = blur(self._sample, self.blur.value(), self.grayscale.isChecked())
        image = QImage(self._tile, self._tile, QImage.Format.Format_RGB32)
        painter = QPainter(image)
        draw_fitted(
            painter, QRect(0, 0, self._tile, self._tile), QPixmap.fromImage(to_qimage(blurred))
        )
        painter.end()
        return image

    def _update_preview(self, *_args) -> None:
        self.preview.setPixmap(QPixmap.fromImage(self.preview_image()))

    def _browse(self) -> None:
        folder = file_dialogs.existing_directory(
            self, "Choose a model folder (config.json + model.safetensors)"
        )
        if folder:
            self.model.setText(folder)

    def result_settings(self) -> Settings:
        """A copy of the settings with this dialog's values."""
        return dataclasses.replace(
            self._base,
            model=self.model.text().strip(),
            device=self.device.currentText(),
            precision=self.precision.currentText(),
            batch_size=self.batch_size.value(),
            blur_strength=self.blur.value(),
            grayscale=self.grayscale.isChecked(),
            reviewer=self.reviewer.text().strip() or self._base.reviewer,
            auto_advance=self.auto_advance.isChecked(),
            detectors=self.detectors.entries(),
            flag_rule=self.detectors.flag_rule.currentData(),
            break_minutes=self.break_minutes.value(),
            max_reveals_per_day=self.max_reveals.value(),
        )


FLAG_RULE_TEXTS = {
    "any": "Flagged when any enabled detector is over its threshold",
    "primary": "Flagged by the primary detector only (the others are shown)",
}


class DetectorsEditor(QWidget):
    """Settings.detectors: models (hub id or folder) in order, the first enabled one the
    primary; each enabled or not, with its own threshold. Empty: the model above alone."""

    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self._default = settings.threshold
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("detectors")
        self.table.setHorizontalHeaderLabels(["Model (first enabled = primary)", "Threshold"])
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(
            0, self.table.horizontalHeader().ResizeMode.Stretch
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(110)
        self.new_model = QLineEdit()
        self.new_model.setPlaceholderText("hub id (org/name) or folder")
        self.new_model.installEventFilter(self)
        add = QPushButton("Add")
        add.clicked.connect(lambda: self.add(self.new_model.text()))
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove_current)
        up, down = QPushButton("Up"), QPushButton("Down")
        up.clicked.connect(lambda: self.move_current(-1))
        down.clicked.connect(lambda: self.move_current(1))
        self.flag_rule = QComboBox()
        self.flag_rule.setObjectName("flag_rule")
        for key, text in FLAG_RULE_TEXTS.items():
            self.flag_rule.addItem(text, key)
        self.flag_rule.setCurrentIndex(max(0, self.flag_rule.findData(settings.flag_rule)))
        adding = QHBoxLayout()
        adding.setContentsMargins(0, 0, 0, 0)
        for widget in (self.new_model, add, browse):
            adding.addWidget(widget, 1 if widget is self.new_model else 0)
        moving = QHBoxLayout()
        moving.setContentsMargins(0, 0, 0, 0)
        for widget in (up, down, remove):
            moving.addWidget(widget)
        moving.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(moving)
        layout.addLayout(adding)
        layout.addWidget(self.flag_rule)
        self._fill([dict(d) for d in settings.detectors])

    def entries(self) -> list[dict]:
        """The table as Settings.detectors entries, in order."""
        found = []
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            spin = self.table.cellWidget(row, 1)
            found.append(
                {
                    "model": item.text().strip(),
                    "threshold": round(spin.value(), 2),
                    "enabled": item.checkState() == Qt.CheckState.Checked,
                }
            )
        return found

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt API)
        """Enter in the new-model field adds it: left to the dialog, Enter pressed OK and
        closed Settings with nothing added (seen driving the desk under X)."""
        if (
            watched is self.new_model
            and event.type() == QEvent.Type.KeyPress
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            self.add(self.new_model.text())
            return True
        return super().eventFilter(watched, event)

    def add(self, model: str) -> None:
        model = model.strip()
        if not model or model in {e["model"] for e in self.entries()}:
            return
        self._fill([*self.entries(), {"model": model, "threshold": 0.5, "enabled": True}])
        self.new_model.clear()

    def remove_current(self) -> None:
        row = self.table.currentRow()
        if row >= 0:
            entries = self.entries()
            del entries[row]
            self._fill(entries)

    def move_current(self, step: int) -> None:
        row = self.table.currentRow()
        entries = self.entries()
        target = row + step
        if row < 0 or not 0 <= target < len(entries):
            return
        entries[row], entries[target] = entries[target], entries[row]
        self._fill(entries)
        self.table.setCurrentCell(target, 0)

    def _fill(self, entries: list[dict]) -> None:
        self.table.setRowCount(0)
        for entry in entries:
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(entry["model"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if entry.get("enabled", True) else Qt.CheckState.Unchecked
            )
            item.setToolTip("Checked: this detector scans and shows; the first checked is primary")
            self.table.setItem(row, 0, item)
            spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.01, decimals=2)
            spin.setValue(float(entry.get("threshold", self._default)))
            self.table.setCellWidget(row, 1, spin)

    def _browse(self) -> None:
        folder = file_dialogs.existing_directory(
            self, "Choose a detector's model folder (config.json + model.safetensors)"
        )
        if folder:
            self.add(folder)
