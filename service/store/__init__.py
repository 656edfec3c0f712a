"""Persistence: every query Herald runs lives in this package, behind small functions."""

from service.store.engine import Store, normalise_url

__all__ = ["Store", "normalise_url"]
