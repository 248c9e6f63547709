"""Manifests for a job's children: worker pods, the headless Service for rendezvous, the config map with
framework files (HCCL rank table, DeepSpeed hostfile), and the env contract. Pure functions of the job and
its recorded placement, so building them again after a crash yields the same objects."""

from __future__ import annotations

import copy
import json
from typing import Any

from cardpool.api.cardpool import CardPoolSpec, NodeGroup, Vendor
from cardpool.api.keys import (
    API_VERSION,
    CONFIG_MOUNT,
    COORDINATOR_PORT,
    LABEL_ATTEMPT,
    LABEL_GROUP,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_MODEL,
    LABEL_POOL,
    LABEL_RANK,
    MANAGED_BY,
)
from cardpool.api.trainingjob import Framework, TrainingJobSpec, TrainingJobStatus
from cardpool.core.attempts import pod_name, rank_nodes
from cardpool.core.observed import ObservedJob
from cardpool.core.plan import RankSlot
from cardpool.core.split import rank_shares

# Communication library per vendor, a hint for mixed jobs and for generic launchers.
COLLECTIVES = {Vendor.NVIDIA: "nccl", Vendor.HUAWEI: "hccl", Vendor.CAMBRICON: "cncl", Vendor.HYGON: "rccl",
               Vendor.AMD: "rccl", Vendor.KUNLUNXIN: "bkcl", Vendor.METAX: "mccl", Vendor.MTHREADS: "mccl",
               Vendor.ENFLAME: "eccl", Vendor.ILUVATAR: "ixccl", Vendor.BIREN: "bccl", Vendor.HABANA: "hccl",
               Vendor.OTHER: ""}
# Gang pods leave a dead node after this long instead of Kubernetes' default 300 s; the operator usually
# restarts the gang sooner.
NODE_FAULT_TOLERATION_SECONDS = 30
GRACE_MARGIN_SECONDS = 30


def config_name(job: str) -> str:
    return f"{job}-cardpool"


def host(job: str, namespace: str, rank: int) -> str:
    """The stable DNS name of a rank (pod hostname + the job's headless Service as subdomain)."""
    return f"{job}-{rank}.{job}.{namespace}.svc"


def labels(job: ObservedJob, pool: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB: job.name, LABEL_POOL: pool}


def owner(job: ObservedJob) -> list[dict]:
    return [{"apiVersion": API_VERSION, "kind": "TrainingJob", "name": job.name, "uid": job.uid,
             "controller": True, "blockOwnerDeletion": True}]


def layout(status: TrainingJobStatus, pool: CardPoolSpec) -> list[dict]:
    """Which ranks run on which family: per group, its first rank, workers, throughput, communication
    library and (with a global batch size) its ranks' share."""
    groups = {g.name: g for g in pool.node_groups}
    out = []
    for gp in status.placement:
        group = groups.get(gp.group)
        entry = {"group": gp.group, "accelerator": gp.accelerator, "firstRank": gp.first_rank,
                 "workers": gp.workers, "relativeThroughput": gp.relative_throughput,
                 "collective": COLLECTIVES.get(group.accelerator.vendor, "") if group else ""}
        if gp.batch_share is not None:
            entry["batchShare"] = gp.batch_share
        out.append(entry)
    return out


def env(job: ObservedJob, pool_name: str, pool: CardPoolSpec, slot: RankSlot) -> list[dict[str, str]]:
    """The env contract of one worker: cardpool's own variables, then the framework's."""
    spec, status = job.spec, job.status
    n, c, r = status.workers or len(rank_nodes(status)), spec.workers.cards_per_worker, slot.rank
    group = next((g for g in pool.node_groups if g.name == slot.group), None)
    master = host(job.name, job.namespace, 0)
    out = {
        "CARDPOOL_JOB": job.name, "CARDPOOL_JOB_UID": job.uid, "CARDPOOL_NAMESPACE": job.namespace,
        "CARDPOOL_POD": pod_name(job.name, status.attempt, r),
        "CARDPOOL_POOL": pool_name,
        "CARDPOOL_ATTEMPT": str(status.attempt), "CARDPOOL_RANK": str(r), "CARDPOOL_WORKERS": str(n),
        "CARDPOOL_CARDS_PER_WORKER": str(c), "CARDPOOL_WORLD_SIZE": str(n * c),
        "CARDPOOL_COORDINATOR": f"{master}:{COORDINATOR_PORT}", "CARDPOOL_ACCELERATOR": slot.model,
        "CARDPOOL_GROUP": slot.group,
        "CARDPOOL_RELATIVE_THROUGHPUT": str(next((gp.relative_throughput for gp in status.placement
                                                  if gp.group == slot.group), 1.0)),
        "CARDPOOL_COLLECTIVE": COLLECTIVES.get(group.accelerator.vendor, "") if group else "",
        "CARDPOOL_LAYOUT": json.dumps(layout(status, pool), separators=(",", ":")),
    }
    if spec.workers.global_batch_size is not None:
        shares = rank_shares(status.placement, spec.workers.global_batch_size)
        out["CARDPOOL_GLOBAL_BATCH"] = str(spec.workers.global_batch_size)
        out["CARDPOOL_BATCH_SHARE"] = str(shares[r]) if r < len(shares) else "0"
    if spec.checkpoint:
        out["CARDPOOL_CHECKPOINT_URI"] = spec.checkpoint.uri
        out["CARDPOOL_GRACEFUL_SAVE_SECONDS"] = str(spec.checkpoint.graceful_save_seconds)
    this = status.history[-1] if status.history and status.history[-1].attempt == status.attempt else None
    if this is not None and this.checkpoint_interval_seconds is not None:  # fixed for the attempt: ranks agree
        out["CARDPOOL_CHECKPOINT_INTERVAL_SECONDS"] = str(this.checkpoint_interval_seconds)
    if status.last_checkpoint:
        ck = status.last_checkpoint
        out |= {"CARDPOOL_RESUME_URI": ck.uri, "CARDPOOL_RESUME_STEP": str(ck.step),
                "CARDPOOL_RESUME_WORLD_SIZE": str(ck.world_size)}
    fw = spec.framework
    if fw in (Framework.PYTORCH, Framework.MEGATRON, Framework.DEEPSPEED):
        torch = {"MASTER_ADDR": master, "MASTER_PORT": str(COORDINATOR_PORT), "NNODES": str(n),
                 "NODE_RANK": str(r), "NPROC_PER_NODE": str(c)}
        out |= torch | {f"PET_{k}": v for k, v in torch.items()}  # torchrun reads PET_* as its flags
    if fw == Framework.DEEPSPEED:
        out["CARDPOOL_HOSTFILE"] = f"{CONFIG_MOUNT}/hostfile"
    if fw == Framework.MINDSPORE:
        out |= {"RANK_TABLE_FILE": f"{CONFIG_MOUNT}/rank_table.json", "RANK_SIZE": str(n * c),
                "RANK_ID": str(r * c), "DEVICE_NUM": str(c), "SERVER_ID": str(r),
                "MS_SCHED_HOST": master, "MS_SCHED_PORT": str(COORDINATOR_PORT), "MS_WORKER_NUM": str(n * c)}
    if fw == Framework.PADDLE:
        endpoints = [f"{host(job.name, job.namespace, i)}:{COORDINATOR_PORT}" for i in range(n)]
        out |= {"PADDLE_TRAINER_ENDPOINTS": ",".join(endpoints), "PADDLE_CURRENT_ENDPOINT": endpoints[r],
                "PADDLE_TRAINERS_NUM": str(n), "PADDLE_TRAINER_ID": str(r), "PADDLE_MASTER": endpoints[0]}
    return [{"name": k, "value": v} for k, v in out.items()]


def rank_table(job: ObservedJob) -> dict:
    """HCCL rank table (version 1.0) for MindSpore on Ascend: one server per worker, its cards as devices
    with global rank ids. device_ip is left empty: on real Ascend nodes the device plugin provides it."""
    c = job.spec.workers.cards_per_worker
    servers = []
    for r in sorted(rank_nodes(job.status)):
        servers.append({"server_id": host(job.name, job.namespace, r), "host_nic_ip": "reserve",
                        "device": [{"device_id": str(d), "device_ip": "", "rank_id": str(r * c + d)}
                                   for d in range(c)]})
    return {"version": "1.0", "server_count": str(len(servers)), "server_list": servers, "status": "completed"}


def hostfile(job: ObservedJob) -> str:
    c = job.spec.workers.cards_per_worker
    return "".join(f"{host(job.name, job.namespace, r)} slots={c}\n" for r in sorted(rank_nodes(job.status)))


def config_map(job: ObservedJob, pool_name: str, pool: CardPoolSpec) -> dict:
    data = {"layout.json": json.dumps(layout(job.status, pool), indent=1)}
    if job.spec.framework == Framework.MINDSPORE:
        data["rank_table.json"] = json.dumps(rank_table(job), indent=1)
    if job.spec.framework == Framework.DEEPSPEED:
        data["hostfile"] = hostfile(job)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": config_name(job.name), "namespace": job.namespace,
                         "labels": {**labels(job, pool_name), LABEL_ATTEMPT: str(job.status.attempt)},
                         "ownerReferences": owner(job)},
            "data": data}


def service(job: ObservedJob, pool_name: str) -> dict:
    """Headless Service: stable DNS names per rank for rendezvous, ready or not. It selects the current
    attempt only, so a pod of an earlier attempt left on a lost node never answers for its rank."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": job.name, "namespace": job.namespace, "labels": labels(job, pool_name),
                         "ownerReferences": owner(job)},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {LABEL_JOB: job.name, LABEL_MANAGED_BY: MANAGED_BY,
                                  LABEL_ATTEMPT: str(job.status.attempt)},
                     "ports": [{"name": "coordinator", "port": COORDINATOR_PORT}]}}


def pin_to_node(pod_spec: dict[str, Any], node: str) -> None:
    """Require `node` on top of the template's own scheduling intent: the operator's matchFields term is
    ANDed into each of the template's required terms (ORed among themselves), or is the only term when it
    has none. Its nodeSelector, preferred terms, pod (anti-)affinity and tolerations stay as they are.
    Placement only chose a node the template admits (core.constraints), so the pod can bind there."""
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    affinity = pod_spec.get("affinity") or {}
    node_affinity = affinity.get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        terms = [{"matchFields": [pin]}]
    else:  # the pin first: kube.observe reads a pod's node from its first metadata.name field.
        # An empty term selects no node, and stays so: ANDed with the pin it would select this one.
        terms = [{**term, "matchFields": [pin, *(term.get("matchFields") or [])]}
                 if isinstance(term, dict) and (term.get("matchExpressions") or term.get("matchFields")) else term
                 for term in required.get("nodeSelectorTerms") or []]
    required = {**(required or {}), "nodeSelectorTerms": terms}
    pod_spec["affinity"] = {**affinity, "nodeAffinity": {
        **node_affinity, "requiredDuringSchedulingIgnoredDuringExecution": required}}


def worker_pod(job: ObservedJob, pool_name: str, pool: CardPoolSpec, slot: RankSlot) -> dict:
    spec: TrainingJobSpec = job.spec
    group: NodeGroup | None = next((g for g in pool.node_groups if g.name == slot.group), None)
    template: dict[str, Any] = copy.deepcopy(spec.workers.template)
    meta = template.get("metadata") or {}
    pod_spec = template["spec"]
    containers = pod_spec["containers"]
    trainer = containers[0]
    override = next((o for o in spec.workers.overrides if o.accelerator == slot.model), None)
    if override and override.image:
        trainer["image"] = override.image
    resources = trainer.setdefault("resources", {})
    if override and override.resources:
        for kind in ("limits", "requests"):
            extra = getattr(override.resources, kind) or {}
            resources.setdefault(kind, {}).update({k: str(v) for k, v in extra.items()})
    if group:
        for kind in ("limits", "requests"):
            resources.setdefault(kind, {})[group.accelerator.resource] = str(spec.workers.cards_per_worker)
    extra_env = [e.wire() for e in override.env] if override else []
    contract = env(job, pool_name, pool, slot)
    names = {e["name"] for e in contract + extra_env}
    trainer["env"] = contract + extra_env + [e for e in trainer.get("env", []) if e.get("name") not in names]
    mounts = trainer.setdefault("volumeMounts", [])
    mounts.append({"name": "cardpool", "mountPath": CONFIG_MOUNT, "readOnly": True})
    pod_spec.setdefault("volumes", []).append({"name": "cardpool", "configMap": {"name": config_name(job.name)}})
    pod_spec["restartPolicy"] = "Never"
    pod_spec["hostname"] = f"{job.name}-{slot.rank}"
    pod_spec["subdomain"] = job.name
    if spec.checkpoint and "terminationGracePeriodSeconds" not in pod_spec:
        pod_spec["terminationGracePeriodSeconds"] = spec.checkpoint.graceful_save_seconds + GRACE_MARGIN_SECONDS
    pin_to_node(pod_spec, slot.node)
    tolerations = pod_spec["tolerations"] = list(pod_spec.get("tolerations") or [])  # the template's first
    tolerations += [t.wire() for t in (group.tolerations if group else [])]
    tolerations += [{"key": key, "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": NODE_FAULT_TOLERATION_SECONDS}
                    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name(job.name, job.status.attempt, slot.rank), "namespace": job.namespace,
            "labels": {**meta.get("labels", {}), **labels(job, pool_name), LABEL_ATTEMPT: str(job.status.attempt),
                       LABEL_RANK: str(slot.rank), LABEL_GROUP: slot.group, LABEL_MODEL: slot.model},
            "annotations": meta.get("annotations", {}),
            "ownerReferences": owner(job),
        },
        "spec": pod_spec,
    }
