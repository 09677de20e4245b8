"""The settings dialog: model, device, batch size, blur, reviewer, auto-advance."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from nsfw_desk.core.hub import DEFAULT_MODEL
from nsfw_desk.core.runtime import DEVICES
from nsfw_desk.core.settings import Settings


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
        self.batch_size = QSpinBox(minimum=1, maximum=256, value=settings.batch_size)
        self.blur = QSlider(
            Qt.Orientation.Horizontal, minimum=1, maximum=32, value=settings.blur_strength
        )
        self.grayscale = QCheckBox("Show thumbnails in grayscale", checked=settings.grayscale)
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
        form.addRow("Device", self.device)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Blur strength", self.blur)
        form.addRow("", self.grayscale)
        form.addRow("Reviewer name", self.reviewer)
        form.addRow("", self.auto_advance)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._base = settings

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
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
            batch_size=self.batch_size.value(),
            blur_strength=self.blur.value(),
            grayscale=self.grayscale.isChecked(),
            reviewer=self.reviewer.text().strip() or self._base.reviewer,
            auto_advance=self.auto_advance.isChecked(),
        )
