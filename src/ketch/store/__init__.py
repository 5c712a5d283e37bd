"""Persistent state: the SQLite database, the content store, image and container records."""
