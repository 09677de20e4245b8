"""Qt-free core of nsfw-desk: models, images, scanning, storage. Never imports Qt."""
