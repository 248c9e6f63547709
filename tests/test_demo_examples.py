"""The `make up` demo runs the example jobs on KWOK's pods, which run no container: localkube.simtrainer plays
their rank 0 and reports progress through cardpool.runtime, so a demo job with hang detection
(failurePolicy.progressTimeoutSeconds) is not restarted with `Hang` every timeout. Here: the Makefile starts
it for the demo's namespace before the jobs, every demo job's timeout leaves room for its reports, and which
pods it reports for, which step, how often (a table). e2e/test_demo.py runs it against the operator."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes.client import V1Container, V1EnvVar, V1ObjectMeta, V1Pod, V1PodSpec, V1PodStatus

from cardpool.api.keys import ANNOTATION_PROGRESS
from localkube import simtrainer

from .examples import EXAMPLES

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def up_recipe() -> str:
    makefile = (EXAMPLES.parents[1] / "Makefile").read_text()
    return makefile.split("\nup:", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")


def demo_jobs() -> list[str]:
    return sorted(set(re.findall(r"manifests/examples/(job-[\w-]+\.yaml)", up_recipe())))


def test_make_up_starts_the_simulated_trainers_for_the_demo_namespace_before_its_jobs() -> None:
    recipe = up_recipe()
    start = next(line for line in recipe.splitlines() if "-m localkube.simtrainer" in line)
    args = shlex.split(start.split(" -- ", 1)[1])
    namespace = args[args.index("--namespace") + 1]
    applied = next(i for i, line in enumerate(recipe.splitlines()) if "job-pytorch-homogeneous.yaml" in line)
    assert recipe.splitlines().index(start) < applied
    assert f"-n {namespace} -f manifests/examples/job-" in recipe  # the jobs go where it reports
    assert "localkube start demo-trainers" in start  # so that `make down` stops it


def test_every_demo_job_with_hang_detection_leaves_room_for_the_reports() -> None:
    jobs = demo_jobs()
    assert len(jobs) == 3, jobs  # the Makefile's `up` target still names them
    timeouts = {name: (yaml.safe_load((EXAMPLES / name).read_text())["spec"].get("failurePolicy") or {}).get(
        "progressTimeoutSeconds") for name in jobs}
    assert timeouts["job-pytorch-homogeneous.yaml"] == 1800  # the demo shows hang detection
    assert all(t is None or t >= 10 * simtrainer.DEFAULT_INTERVAL_S for t in timeouts.values()), timeouts


def pod(name: str = "llama-sft-a1-0", rank: int = 0, phase: str = "Running", uid: str = "u0",
        started: datetime | None = START, resume: int | None = None, deleting: bool = False,
        annotations: dict | None = None, contract: bool = True) -> V1Pod:
    env = {"CARDPOOL_JOB": "llama-sft", "CARDPOOL_NAMESPACE": "demo", "CARDPOOL_ATTEMPT": "1",
           "CARDPOOL_RANK": str(rank), "CARDPOOL_WORKERS": "4", "CARDPOOL_CARDS_PER_WORKER": "8",
           "CARDPOOL_WORLD_SIZE": "32", "CARDPOOL_POD": name}
    if resume is not None:
        env |= {"CARDPOOL_RESUME_URI": "s3://c/1", "CARDPOOL_RESUME_STEP": str(resume),
                "CARDPOOL_RESUME_WORLD_SIZE": "32"}
    return V1Pod(metadata=V1ObjectMeta(name=name, namespace="demo", uid=uid, annotations=annotations,
                                       deletion_timestamp=START if deleting else None),
                 spec=V1PodSpec(containers=[V1Container(name="trainer", env=[
                     V1EnvVar(name=k, value=v) for k, v in (env if contract else {}).items()])]),
                 status=V1PodStatus(phase=phase, start_time=started))


PASSES = [
    # (name, pods, seconds after START, step reported or None)
    ("rank 0 running: a step a second since it started", [pod()], 90, 90),
    ("resumed: counts on from its resume step", [pod(resume=1200)], 30, 1230),
    ("not yet started", [pod(started=None)], 30, None),
    ("pending", [pod(phase="Pending")], 30, None),
    ("succeeded: its trainer ended", [pod(phase="Succeeded")], 30, None),
    ("being deleted", [pod(deleting=True)], 30, None),
    ("other ranks never report", [pod(name="llama-sft-a1-1", rank=1)], 30, None),
    ("run as a local process: it reports for itself", [pod(annotations={"localkube.cardpool.io/run": "process"})],
     30, None),
    ("not a cardpool trainer", [pod(contract=False)], 30, None),
]


@pytest.mark.parametrize(("name", "pods", "after", "reported"), PASSES, ids=[p[0] for p in PASSES])
def test_which_pods_get_a_report_and_which_step(name: str, pods: list[V1Pod], after: int,
                                                reported: int | None) -> None:
    writes: list[tuple[str, str, dict]] = []
    trainers = simtrainer.Trainers(lambda *w: writes.append(w), step_seconds=1.0, interval=30)
    assert trainers.pass_over(pods, START + timedelta(seconds=after)) == (reported is not None)
    if reported is not None:
        ((pod_name, namespace, patch),) = writes
        assert (pod_name, namespace) == ("llama-sft-a1-0", "demo")
        assert json.loads(patch["metadata"]["annotations"][ANNOTATION_PROGRESS])["step"] == reported


def test_one_report_per_pod_per_interval_and_a_new_pod_starts_over() -> None:
    writes: list[tuple[str, str, dict]] = []
    clock = [0.0]
    trainers = simtrainer.Trainers(lambda *w: writes.append(w), step_seconds=2.0, interval=30,
                                   clock=lambda: clock[0])

    def at(seconds: float, pods: list[V1Pod]) -> int:
        clock[0] = seconds
        return trainers.pass_over(pods, START + timedelta(seconds=seconds))

    assert [at(t, [pod()]) for t in (0, 10, 29, 30, 45, 61)] == [1, 0, 0, 1, 0, 1]
    steps = [json.loads(w[2]["metadata"]["annotations"][ANNOTATION_PROGRESS])["step"] for w in writes]
    assert steps == [0, 15, 30]
    assert at(62, []) == 0 and not trainers.reporters  # the pod went: its trainer with it
    assert at(63, [pod(name="llama-sft-a2-0", uid="u1", started=START + timedelta(seconds=62))]) == 1
    assert writes[-1][0] == "llama-sft-a2-0"
