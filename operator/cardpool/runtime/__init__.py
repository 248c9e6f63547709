"""Trainer-side helper library used inside training pods (env contract, checkpoint and progress reports)."""
