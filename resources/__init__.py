"""Icons, desktop entry and AppStream data, installed as package data of nsfw-desk."""
