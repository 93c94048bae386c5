"""Partwise desktop app and its headless library engine (only app.ui imports Qt)."""
