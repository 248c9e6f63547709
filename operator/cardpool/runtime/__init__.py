"""Trainer-side helper library used inside training pods: the env contract, checkpoints, graceful stop.

    from cardpool.runtime import Contract, FileCheckpoints, GracefulStop, ProgressReporter, SaveSchedule,
        report_checkpoint
"""

from .checkpoints import FileCheckpoints, Saved
from .contract import Contract, Resume
from .progress import ProgressReporter
from .report import report_checkpoint
from .schedule import SaveSchedule
from .signals import GracefulStop

__all__ = ["Contract", "FileCheckpoints", "GracefulStop", "ProgressReporter", "Resume", "SaveSchedule",
           "Saved", "report_checkpoint"]
