"""STAC side: build Items from descriptions, validate them offline, write them atomically."""
