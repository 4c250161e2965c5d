"""Tests of the network simulators (simulators/)."""
