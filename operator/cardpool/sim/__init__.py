"""Discrete-event simulator driving the same core with a virtual clock."""
