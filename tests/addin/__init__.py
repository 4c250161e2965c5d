"""Tests of pacsref.addin and the shipped add-ins."""
