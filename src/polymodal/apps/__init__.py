"""Drivers built on the library: zero-config `fit` (and its helpers)."""
