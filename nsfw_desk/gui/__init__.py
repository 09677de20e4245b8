"""The desk's Qt (PySide6) layer: a thin window over nsfw_desk.core."""
