"""nsfw-desk: a review desk for content moderators."""
