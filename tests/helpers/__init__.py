"""Helpers shared by tests: import them from here, never from another test module."""
