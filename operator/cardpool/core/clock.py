"""`now`, and the earliest future moment a decision looked at.

Every time-based rule of the core (a backoff's end, a start or hang timeout, a probation, a graceful save's
deadline) asks `deadlines.reached(t)` instead of comparing with `now` itself. The answer is the same, and the
earliest `t` still ahead is kept: until then, a decision made on unchanged inputs stays the same, so the
operator can skip deciding again (and sleep) until something changes or that moment comes.
"""

from __future__ import annotations

from datetime import datetime


class Deadlines:
    __slots__ = ("next", "now")

    def __init__(self, now: datetime):
        self.now = now
        self.next: datetime | None = None

    def reached(self, moment: datetime) -> bool:
        if moment <= self.now:
            return True
        if self.next is None or moment < self.next:
            self.next = moment
        return False

    def note(self, moment: datetime | None) -> None:
        """A moment at which something outside a `reached` test changes (e.g. a clamp to `now` ends)."""
        if moment is not None and moment > self.now and (self.next is None or moment < self.next):
            self.next = moment

