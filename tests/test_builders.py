"""The env contract and framework files, built from a job and its recorded placement (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from cardpool.core.attempts import record
from cardpool.core.observed import ObservedJob
from cardpool.core.placement import Placement
from cardpool.core.plan import RankSlot
from cardpool.core.snapshot import Worker
from cardpool.kube import builders

from .examples import EXAMPLES

POOL = CardPoolSpec.model_validate(yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"])


def observed(example: str, framework: str | None = None, workers=(("h800", "H800"),) * 2, **status) -> ObservedJob:
    spec = yaml.safe_load((EXAMPLES / example).read_text())["spec"]
    if framework:
        spec["framework"] = framework
    placement = Placement("ns/j", tuple(Worker(r, f"{g}-{r}", g, m, spec["workers"]["cardsPerWorker"])
                                        for r, (g, m) in enumerate(workers)))
    rates = {g.name: g.accelerator.relative_throughput for g in POOL.node_groups}
    batch = spec["workers"].get("globalBatchSize")
    st = TrainingJobStatus(attempt=2, placement=record(placement, rates, batch), workers=len(workers), **status)
    return ObservedJob("ns", "j", "uid", 1, datetime(2026, 1, 1, tzinfo=UTC), TrainingJobSpec.model_validate(spec), st)


def env(job: ObservedJob, rank: int) -> dict[str, str]:
    node, group, model = f"{job.status.placement[0].group}-{rank}", job.status.placement[0].group, "H800"
    return {e["name"]: e["value"] for e in builders.env(job, "pool", POOL, RankSlot(rank, node, group, model))}


def test_paddle_gets_trainer_endpoints() -> None:
    e = env(observed("job-pytorch-homogeneous.yaml", "Paddle"), 1)
    assert e["PADDLE_TRAINER_ENDPOINTS"] == "j-0.j.ns.svc:29500,j-1.j.ns.svc:29500"
    assert (e["PADDLE_CURRENT_ENDPOINT"], e["PADDLE_TRAINER_ID"], e["PADDLE_TRAINERS_NUM"]) == (
        "j-1.j.ns.svc:29500", "1", "2")
    assert "MASTER_ADDR" not in e


def test_deepspeed_gets_a_hostfile_and_torchrun_variables() -> None:
    job = observed("job-pytorch-homogeneous.yaml", "DeepSpeed")
    assert builders.hostfile(job) == "j-0.j.ns.svc slots=8\nj-1.j.ns.svc slots=8\n"
    data = builders.config_map(job, "pool", POOL)["data"]
    assert data["hostfile"] == builders.hostfile(job)
    e = env(job, 0)
    assert e["CARDPOOL_HOSTFILE"] == "/etc/cardpool/hostfile" and e["MASTER_ADDR"] == "j-0.j.ns.svc"


def test_generic_jobs_get_only_cardpools_contract_and_the_resume_point() -> None:
    ck = {"step": 1200, "uri": "s3://c/1200", "time": "2026-01-01T00:00:00Z", "world_size": 32}
    e = env(observed("job-pytorch-homogeneous.yaml", "Generic", last_checkpoint=ck), 0)
    assert (e["CARDPOOL_RESUME_STEP"], e["CARDPOOL_RESUME_URI"], e["CARDPOOL_RESUME_WORLD_SIZE"]) == (
        "1200", "s3://c/1200", "32")
    assert e["CARDPOOL_ATTEMPT"] == "2" and not any(k.startswith(("MASTER_", "PADDLE_", "RANK_")) for k in e)


def test_an_attempt_is_given_the_checkpoint_interval_it_was_advised_at_its_start() -> None:
    t = "2026-01-01T00:00:00Z"
    advised = [{"attempt": 1, "workers": 2, "startTime": t, "checkpointIntervalSeconds": 600},
               {"attempt": 2, "workers": 2, "startTime": t, "checkpointIntervalSeconds": 1138}]
    advice = {"intervalSeconds": 2277, "mtbfSeconds": 43200, "saveSeconds": 60, "nodes": 2, "faults": 8}
    e = env(observed("job-pytorch-homogeneous.yaml", history=advised, checkpoint_advice=advice), 1)
    assert e["CARDPOOL_CHECKPOINT_INTERVAL_SECONDS"] == "1138"  # the attempt's, not the newer advice: ranks agree
    unadvised = [{**advised[1], "checkpointIntervalSeconds": None}]
    assert "CARDPOOL_CHECKPOINT_INTERVAL_SECONDS" not in env(observed("job-pytorch-homogeneous.yaml",
                                                                      history=unadvised), 1)
    assert "CARDPOOL_CHECKPOINT_INTERVAL_SECONDS" not in env(observed("job-pytorch-homogeneous.yaml",
                                                                      history=advised[:1]), 1)  # another attempt's


def test_mixed_jobs_carry_the_layout_and_per_family_overrides() -> None:
    job = observed("job-mixed-families.yaml", workers=(("h800", "H800"), ("ascend910b", "Ascend910B")))
    layout = builders.layout(job.status, POOL)
    assert [(g["accelerator"], g["firstRank"], g["workers"], g["relativeThroughput"], g["collective"],
             g["batchShare"]) for g in layout] == [("H800", 0, 1, 1.0, "nccl", 640), ("Ascend910B", 1, 1, 0.6, "hccl",
                                                                                     384)]
    pod = builders.worker_pod(job, "pool", POOL, RankSlot(1, "ascend910b-1", "ascend910b", "Ascend910B"))
    trainer = pod["spec"]["containers"][0]
    assert trainer["image"].endswith(":cann8")
    assert trainer["resources"]["limits"]["huawei.com/Ascend910"] == "8"
    assert trainer["resources"]["requests"]["memory"] == "512Gi"
    env_ = {e["name"]: e["value"] for e in trainer["env"]}
    assert env_["HCCL_BUFFSIZE"] == "200" and env_["CARDPOOL_COLLECTIVE"] == "hccl"
    # 1024 samples split 1.0 : 0.6 in whole samples
    assert (env_["CARDPOOL_GLOBAL_BATCH"], env_["CARDPOOL_BATCH_SHARE"], env_["CARDPOOL_RELATIVE_THROUGHPUT"]) == (
        "1024", "384", "0.6")
    assert pod["metadata"]["name"] == "j-a2-1"
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["ascend910b-1"]


def test_the_service_selects_only_the_current_attempt() -> None:
    svc = builders.service(observed("job-pytorch-homogeneous.yaml"), "pool")
    assert svc["spec"]["selector"]["cardpool.io/attempt"] == "2"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
