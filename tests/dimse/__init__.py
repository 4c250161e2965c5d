"""Tests of pacsref.dimse, the sans-IO DIMSE message layer."""
