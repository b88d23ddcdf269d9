"""Publish model Items to a STAC API (placeholder)."""
