"""The simulated world with the operator's own pass deciding: scenarios that read as a spec of what a job lives
through (attempts, sizes, resume steps, end reasons), and the time accounting that comes out of them.

Numbers are worked out from the trainer model: a pod runs 20 s after its creation (pod_start_s), training
starts 60 s after the last pod runs (restart_s), a step takes 1 s at full size, a save every 300 s of training
blocks it for 10 s, a deleted pod is gone 5 s later (terminate_s), a stopped node is NotReady 40 s later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cardpool.api.cardpool import CardPoolSpec
from cardpool.sim.faults import Fault
from cardpool.sim.trainer import TrainerModel
from cardpool.sim.world import EPOCH, JobTrace, World, fleet

SAVED = -1
"""In a scenario's attempts: resumed from the graceful save of the attempt before (its step is checked apart)."""
TRAINER = TrainerModel(save_s=10.0, interval_s=300.0, restart_s=60.0, pod_start_s=20.0, terminate_s=5.0)
HOUR = 3600.0


def pool(probation_s: int = 600) -> CardPoolSpec:
    return CardPoolSpec.model_validate({
        "nodeGroups": [{"name": "h800", "nodeSelector": {"g": "h800"}, "topologyKeys": ["rack"],
                        "accelerator": {"vendor": "nvidia", "model": "H800", "resource": "nvidia.com/gpu",
                                        "cardsPerNode": 8}}],
        "health": {"probationSeconds": probation_s, "maxDrainedPercent": 50}})


@dataclass
class Scenario:
    name: str
    nodes: int
    workers: tuple[int, int]
    faults: list[tuple[float, str, int, float | None]] = field(default_factory=list)
    """(time, kind, index of the struck node among the job's first attempt's nodes, repair after seconds)."""
    steps: int = 10**9
    horizon: float = 4 * HOUR
    attempts: list[tuple[int, int | None, str | None]] = field(default_factory=list)
    """Per attempt: (workers, resumed from step, end reason)."""
    phase: str = "Running"
    second: tuple[float, float] | None = None
    """When the second attempt was placed: within (earliest, latest) seconds."""


SCENARIOS = [
    Scenario("no fault: the job runs to its last step and succeeds", nodes=4, workers=(4, 4), steps=1000,
             # training 80 s..1110 s: 1,000 steps and three 10 s saves
             attempts=[(4, None, "Succeeded")], phase="Succeeded"),
    Scenario("a node fault with a spare node: a new attempt at full size, from the last save", nodes=5,
             workers=(4, 4), faults=[(500.0, "node", 0, 2 * HOUR)],
             # training from 80 s: save at 380 s (step 300), the fault at 500 s (step 410): detected at 540 s
             attempts=[(4, None, "NodeNotReady"), (4, 300, None)], second=(540.0, 550.0)),
    Scenario("a node fault without a spare: the elastic job shrinks, and grows back after repair and probation",
             nodes=4, workers=(2, 4), faults=[(500.0, "node", 0, 1 * HOUR)],
             # repaired at 4,100 s, returned after 600 s of probation, grown 300 s later with a graceful save
             attempts=[(4, None, "NodeNotReady"), (3, 300, "GrowTo4"), (4, SAVED, None)], second=(540.0, 550.0)),
    Scenario("a node fault without a spare, fixed size: the job waits for the repair", nodes=4, workers=(4, 4),
             faults=[(500.0, "node", 0, 1 * HOUR)],
             # repaired at 4,100 s: the node takes workers again after 600 s of probation
             attempts=[(4, None, "NodeNotReady"), (4, 300, None)], second=(4700.0, 4710.0)),
    Scenario("a rank exits: a counted restart from the last save", nodes=4, workers=(4, 4),
             faults=[(500.0, "software", 0, None)],
             attempts=[(4, None, "ExitCode1"), (4, 300, None)]),
    Scenario("a card fails: the node is drained and the job restarts without it", nodes=5, workers=(4, 4),
             faults=[(500.0, "card", 1, 2 * HOUR)],
             attempts=[(4, None, "CardFault"), (4, 300, None)]),
]


def run(s: Scenario) -> World:
    spec = pool()
    nodes = fleet(spec, {"h800": s.nodes})
    trace = JobTrace("job", 0.0, 8, s.workers[0], s.workers[1], ("H800",), s.steps, 1.0)
    world = World(spec, nodes, [trace], TRAINER, None, s.horizon)
    if s.faults:
        world.run(until_s=s.faults[0][0] - 1)  # the job placed: its first attempt's nodes are known
        placed = world.jobs["sim/job"].status.placement[0].nodes
        for at, kind, index, repair in s.faults:
            world._at(at, "fault", Fault(at, kind, (placed[index],), at + repair if repair else None))
    world.run()
    world.close()
    return world


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_a_job_lives_through_faults_as_the_operator_decides(s: Scenario) -> None:
    world = run(s)
    job = world.jobs["sim/job"]
    seen = [(h.workers, h.resumed_from_step, h.end_reason) for h in job.status.history]
    expected = [(w, seen[i][1] if step == SAVED else step, why) for i, (w, step, why) in enumerate(s.attempts)]
    assert seen == expected
    assert job.status.phase.value == s.phase
    if s.second is not None:
        placed = (job.status.history[1].start_time - EPOCH).total_seconds()
        assert s.second[0] <= placed <= s.second[1], placed


def test_a_job_without_faults_spends_its_time_as_the_trainer_model_says() -> None:
    world = run(SCENARIOS[0])
    timeline = world.records["sim/job"].timeline
    assert timeline.first_start == 0.0 and timeline.end == pytest.approx(1110.0)
    assert timeline.kept_s == pytest.approx(1000.0) and timeline.lost_s == 0.0
    assert timeline.ettr(world.t) == pytest.approx(1000 / 1110)


def test_a_fault_loses_the_training_since_the_last_save() -> None:
    world = run(SCENARIOS[1])
    timeline = world.records["sim/job"].timeline
    # the save at 380 s holds step 300; the ranks died at 500 s, after 110 s of training since that save
    assert timeline.losses == [("NodeNotReady", pytest.approx(110.0))]
    assert world.records["sim/job"].restarts == {"NodeNotReady": 1}


def test_growing_back_saves_first_and_loses_nothing() -> None:
    world = run(SCENARIOS[2])
    history = world.jobs["sim/job"].status.history
    grown = history[-1]
    assert history[-2].planned and grown.resumed_from_step is not None and grown.resumed_from_step > 300
    assert [cause for cause, _ in world.records["sim/job"].timeline.losses] == ["NodeNotReady"]


def test_the_same_seed_gives_the_same_run() -> None:
    from cardpool.sim.faults import FaultModel

    def once() -> tuple:
        spec = pool()
        trace = JobTrace("job", 0.0, 8, 2, 4, ("H800",), 10**9, 1.0)
        world = World(spec, fleet(spec, {"h800": 6}), [trace], TRAINER, FaultModel().scaled(1.0, 48), 12 * HOUR, 5)
        world.run()
        world.close()
        return (len(world.faults_seen), [(h.workers, h.end_reason) for h in world.jobs["sim/job"].status.history],
                world.records["sim/job"].timeline.kept_s)
    first = once()
    assert first == once() and first[0] > 3


def test_a_plan_never_changes_the_observed_status_it_was_made_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """plan_job copies only what it changes in place (lifecycle._writable): through faults, restarts, shrinking,
    growing and saves, every job's observed status is the same after its plan as before."""
    import cardpool.core.pool as pool_pass
    from cardpool.sim.faults import FaultModel

    real = pool_pass.plan_job
    seen: dict[str, int] = {}

    def checked(job, *args, **kwargs):
        before = job.status.model_copy(deep=True)
        plan = real(job, *args, **kwargs)
        assert job.status == before, f"plan_job changed the observed status of {job.key}"
        seen[plan.status.phase] = seen.get(plan.status.phase, 0) + 1
        return plan

    monkeypatch.setattr(pool_pass, "plan_job", checked)
    spec = pool()
    jobs = [JobTrace(f"job{i}", 600.0 * i, 8, 1, 3, ("H800",), 20_000, 1.0) for i in range(3)]
    world = World(spec, fleet(spec, {"h800": 7}), jobs, TRAINER, FaultModel().scaled(1.0, 56), 12 * HOUR, 5)
    world.run()
    world.close()
    restarts = sum(sum(r.restarts.values()) for r in world.records.values())
    assert restarts > 3 and {"Restarting", "Running", "Succeeded"} <= set(seen)  # the transitions were lived


def test_the_pass_memo_decides_exactly_what_fresh_passes_decide() -> None:
    """The pool pass reuses what did not change (nodes, allocations, the queue, group figures, plans of jobs
    that did not change, finished jobs left out): through arrivals, faults, repairs, shrinking, growing and
    jobs ending, a run with it is the run without it, pass for pass."""
    from cardpool.sim.faults import FaultModel

    def once(memo: bool) -> tuple:
        spec = pool()
        jobs = [JobTrace(f"job{i}", 900.0 * i, 8 if i % 3 else 1, 1, 1 + i % 4, ("H800",), 2_000 + 700 * i, 1.0)
                for i in range(12)]
        world = World(spec, fleet(spec, {"h800": 8}), jobs, TRAINER, FaultModel().scaled(1.0, 64), 12 * HOUR, 3)
        if not memo:
            world.memo = None
        world.run()
        world.close()
        return (world.passes, world.pool_status,
                [(j.key, j.status) for j in world.jobs.values()],
                [(k, r.phase, r.finished, r.restarts, r.timeline.held_card_s) for k, r in world.records.items()])

    kept = once(memo=True)
    assert kept == once(memo=False)
    statuses = [status for _, status in kept[2]]
    assert sum(s.phase == "Succeeded" for s in statuses) >= 6 and sum(len(s.history) for s in statuses) > 15


def test_defragmentation_never_moves_two_jobs_back_and_forth() -> None:
    """Found by `cardpool simulate`: elastic jobs that each needed the other's cards moved each other in turn,
    70 times each: the target of the moves, placed first, took its largest size and left the moved job no
    room. It now starts at the size the moves made room for; and a job moves at most once an hour, never for
    the job moved for it."""
    import yaml

    from cardpool.core.lifecycle import MIGRATED

    from ..examples import EXAMPLES

    spec = CardPoolSpec.model_validate(yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"])
    jobs = [JobTrace(name, arrival, 8, low, high, ("MLU590",), steps, 1.0) for name, arrival, low, high, steps in [
        ("j3", 93480.287, 4, 8, 47231), ("j7", 81691.043, 2, 4, 79184), ("j8", 68249.676, 4, 8, 104380),
        ("j10", 37495.343, 4, 8, 85720), ("j11", 72774.463, 2, 4, 65061), ("j16", 83289.846, 1, 1, 16122),
        ("j24", 154942.786, 1, 2, 45176)]]
    world = World(spec, fleet(spec, {"mlu590": 8}), jobs, TrainerModel(), None, 4 * 86400.0)
    world.run()
    world.close()
    moves = {key: [h.end_time for h in job.status.history if h.end_reason == MIGRATED]
             for key, job in world.jobs.items()}
    assert all(len(times) <= 1 for times in moves.values()), moves
    assert sum(len(times) for times in moves.values()) >= 1  # defragmentation did act
    assert {j.status.phase.value for j in world.jobs.values()} <= {"Succeeded", "Running"}


def test_the_simulator_lives_the_e2e_node_fault_scenario_as_the_cluster_does() -> None:
    """Fidelity: e2e/test_fault_tolerance.py::test_a_node_fault_drains_the_node_restarts_shrunk_from_the_
    checkpoint_and_grows_back_after_probation on the real cluster, here in the simulator: the example pool with
    the e2e health policy (probation 3 s, cap 34%) on the small fleet's 6 H800 nodes, a 2-node holder and an
    elastic 2..4 job (growAfterSeconds 2); a node of the elastic job fails and comes back. Both must give the
    same attempts, sizes, end reasons and resume points: shrunk to 3 from the last save before the fault, grown
    back to 4 from the graceful save of the stopped attempt (the e2e test asserts the same history)."""
    import yaml

    from ..examples import EXAMPLES

    body = yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"]
    body["health"] = {"faultConditions": ["KernelDeadlock", "GPUUnhealthy"], "probationSeconds": 3,
                      "maxDrainedPercent": 34, "stuckTerminatingSeconds": 10}
    spec = CardPoolSpec.model_validate(body)
    holder = JobTrace("holder", 0.0, 8, 2, 2, ("H800",), 10**9, 1.0)
    job = JobTrace("job", 60.0, 8, 2, 4, ("H800",), 10**9, 1.0)
    world = World(spec, fleet(spec, {"h800": 6}), [holder, job], TRAINER, None, 2 * HOUR)
    world.run(until_s=600)
    victim = world.jobs["sim/job"].status.placement[0].nodes[1]
    world._at(700.0, "fault", Fault(700.0, "node", (victim,), 1000.0))
    world.run(until_s=900)
    shrunk = world.jobs["sim/job"].status
    assert shrunk.attempt == 2 and shrunk.workers == 3 and victim not in shrunk.placement[0].nodes
    world.run()
    world.close()
    grown = world.jobs["sim/job"]
    # growAfterSeconds is the spec's default in the simulator (300 s); the e2e test sets 2 s: the same path
    history = [(h.attempt, h.workers, h.end_reason) for h in grown.status.history]
    assert history == [(1, 4, "NodeNotReady"), (2, 3, "GrowTo4"), (3, 4, None)]
    _, second, third = grown.status.history
    # placed at 60 s, pods run at 80 s, training from 140 s: saves at step 300 (440 s), then 750 s, after the fault
    assert second.resumed_from_step == 300  # the last save before the fault
    assert second.end_time is not None and second.planned  # grown with a graceful save ...
    assert third.resumed_from_step is not None and third.resumed_from_step > second.resumed_from_step  # ... kept
    assert world.jobs["sim/holder"].status.attempt == 1  # untouched
