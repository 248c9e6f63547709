"""What the API server's answer to a write means for the operator. Pure: reads an ApiException.

Some answers are states of the world, not failures: a 404 on a deleted object, a 403 in a namespace being
deleted. Others are the user's to fix: the API server refuses the pod cardpool built from the job's
template (422/400: invalid; 403: refused by admission, e.g. a PodSecurity level, a missing PriorityClass,
a quota). Only the rest (5xx, timeouts, 429) is the operator's to retry.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from cardpool.core.observed import PodRefusal

INVALID_POD_TEMPLATE = "InvalidPodTemplate"
PODS_REFUSED = "PodsRefused"


class Refused(Exception):
    """A child of a job was refused by the API server; carries what the job's status will say."""

    def __init__(self, refusal: PodRefusal):
        super().__init__(refusal.message)
        self.refusal = refusal


def body(exc: BaseException) -> dict[str, Any]:
    """The Status object the API server answered with ({} when there is none)."""
    text = getattr(exc, "body", None)
    if not isinstance(text, str | bytes) or not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def message(exc: BaseException) -> str:
    return str(body(exc).get("message") or getattr(exc, "reason", None) or exc)


def namespace_terminating(exc: BaseException) -> bool:
    """A create in a namespace that is being deleted: its objects, the job among them, are going away."""
    if not isinstance(exc, ApiException) or exc.status != 403:
        return False
    causes = (body(exc).get("details") or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes if isinstance(c, dict)) or (
        "because it is being terminated" in message(exc))


def gone(exc: BaseException) -> bool:
    """The object (or its namespace) no longer exists."""
    return isinstance(exc, ApiException) and exc.status == 404


def pod_refusal(exc: BaseException, what: str) -> PodRefusal | None:
    """The refusal a job's status reports when the API server refuses `what` (e.g. "the worker pod for H800"),
    or None when the answer is not the user's to fix."""
    if not isinstance(exc, ApiException) or namespace_terminating(exc):
        return None
    if exc.status in (400, 422):
        return PodRefusal(INVALID_POD_TEMPLATE, f"the API server refuses {what}: {message(exc)}")
    if exc.status == 403:
        return PodRefusal(PODS_REFUSED, f"the API server refuses {what}: {message(exc)}")
    return None
