"""The bar above the grid that says the model could not be loaded, and what to do about it.

Non-modal on purpose: without a model the folder is still listed (blurred thumbnails, no
scores) and the moderator keeps reviewing; the bar stays until a model loads.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy


class ModelBar(QFrame):
    choose_folder = Signal()
    open_settings = Signal()
    retry = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("modelBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # Warm colours read as "attention" in light and dark themes alike.
        self.setStyleSheet(
            "#modelBar { background: #fff4d6; border: 1px solid #e0b04a; border-radius: 3px; }"
            "#modelBar QLabel { color: #3d2e00; }"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        icon = QLabel("⚠")
        icon.setStyleSheet("font-size: 16px;")
        layout.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.message, 1)
        self.choose_button = QPushButton("Choose a model folder…")
        self.choose_button.setToolTip("A folder with config.json and model.safetensors")
        self.settings_button = QPushButton("Settings…")
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Load the model again and score the listed images")
        for button, signal in (
            (self.choose_button, self.choose_folder),
            (self.settings_button, self.open_settings),
            (self.retry_button, self.retry),
        ):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the grid
            button.clicked.connect(signal)
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def buttons(self) -> list[QPushButton]:
        return [self.choose_button, self.settings_button, self.retry_button]

    def show_problem(self, title: str, message: str) -> None:
        """Show why the model is missing; the listing goes on below without scores."""
        self.message.setText(
            f"<b>{_escape(title)}.</b> {_escape(message)}<br>"
            "The folder is listed without scores: you can review it now; the images are "
            "scored once a model loads."
        )
        self.message.setToolTip(message)
        self.set_busy(False)
        self.show()

    def set_busy(self, busy: bool) -> None:
        """While a model is being loaded again, the buttons wait."""
        for button in self.buttons():
            button.setEnabled(not busy)
        self.retry_button.setText("Loading…" if busy else "Retry")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
