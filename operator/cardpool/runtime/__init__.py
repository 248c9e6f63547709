"""Trainer-side helper library used inside training pods: the env contract, checkpoints, graceful stop.

    from cardpool.runtime import Contract, FileCheckpoints, GracefulStop
"""

from .checkpoints import FileCheckpoints, Saved
from .contract import Contract, Resume
from .report import report_checkpoint
from .signals import GracefulStop

__all__ = ["Contract", "FileCheckpoints", "GracefulStop", "Resume", "Saved", "report_checkpoint"]
