"""Readers of dataset layouts that are not one table (they produce the same per-split tables)."""
