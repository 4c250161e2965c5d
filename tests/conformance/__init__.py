"""Tests of the PS3.8 conformance suite (conformance/)."""
