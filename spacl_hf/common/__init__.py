"""Shared helpers that are not integrations: standard library (and the core) only, usable by every integration."""
