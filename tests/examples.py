"""Paths of the example manifests, shared by the unit tests."""

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "examples"
