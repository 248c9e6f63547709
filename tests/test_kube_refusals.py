"""What an API server answer means for the operator: a state, the user's mistake, or the operator's to retry."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from cardpool.kube.refusals import gone, namespace_terminating, pod_refusal


def answer(status: int, message: str = "", causes: list[dict] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message, "details": {"causes": causes or []}})
    return exc


TERMINATING = answer(403, 'pods "job-a1-0" is forbidden: unable to create new content in namespace t because it is '
                          'being terminated', [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}])


@pytest.mark.parametrize(("exc", "terminating", "is_gone", "refusal"), [
    (TERMINATING, True, False, None),  # a state: the job goes with its namespace
    (answer(404, 'trainingjobs "x" not found'), False, True, None),  # a state: deleted
    (answer(422, 'Pod "j-a1-0" is invalid: spec.containers[0].name: Invalid value: "Trainer"'), False, False,
     ("InvalidPodTemplate", 'spec.containers[0].name: Invalid value: "Trainer"')),
    (answer(400, "quantities must match the regular expression"), False, False,
     ("InvalidPodTemplate", "quantities must match")),
    (answer(403, 'pods "j-a1-0" is forbidden: no PriorityClass with name gold was found'), False, False,
     ("PodsRefused", "no PriorityClass with name gold")),
    (answer(403, 'violates PodSecurity "baseline:latest": privileged'), False, False,
     ("PodsRefused", 'violates PodSecurity "baseline:latest"')),
    (answer(409, "already exists"), False, False, None),  # the operator's own concern
    (answer(500, "etcdserver: request timed out"), False, False, None),
    (answer(429, "too many requests"), False, False, None),
    (ConnectionError("reset"), False, False, None),
])
def test_each_answer_is_read_as_a_state_a_refusal_or_an_error_to_retry(
        exc: BaseException, terminating: bool, is_gone: bool, refusal: tuple[str, str] | None) -> None:
    assert namespace_terminating(exc) is terminating
    assert gone(exc) is is_gone
    found = pod_refusal(exc, "the worker pod for H800")
    if refusal is None:
        assert found is None
    else:
        assert found is not None and found.reason == refusal[0]
        assert refusal[1] in found.message and found.message.startswith("the API server refuses the worker pod")


def test_an_answer_without_a_status_body_still_gives_a_message() -> None:
    exc = ApiException(status=422, reason="Unprocessable Entity")
    found = pod_refusal(exc, "the pod")
    assert found is not None and "Unprocessable Entity" in found.message
