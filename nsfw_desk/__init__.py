"""nsfw-desk: a review desk for content moderators."""

__version__ = "0.1.0"
