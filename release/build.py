"""Release assets (`make release`), as Kueue and JobSet ship theirs: one manifests.yaml for
`kubectl apply --server-side -f`, prometheus.yaml (a ServiceMonitor for the metrics Service and a PrometheusRule)
and the Grafana dashboard.

    python release/build.py --kubectl PATH [--out dist] [--image REGISTRY/NAME:TAG]

manifests.yaml is `kubectl kustomize manifests/` as it is, so it cannot drift from the kustomize install. The
ServiceMonitor takes the Service's namespace, labels and port from that build. The alerts use only metrics the
operator exports (tests/test_release.py checks every cardpool_* name), and read the pool figures only from the
replica that is running passes: a replica that lost the lease keeps its last gauges.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SERVICE = "cardpool-operator-metrics"
DASHBOARD = REPO / "manifests" / "grafana" / "cardpool-dashboard.json"
RESTARTING_FOR = "30m"  # the restart backoff tops out at 10 minutes: three times that is stuck


PUBLISHED = "ghcr.io/cardpool/operator"  # the image manifests/operator/deployment.yaml names


def kustomize(kubectl: str, image: str | None = None) -> str:
    """manifests/ built; with `image` (REGISTRY/NAME:TAG) through an overlay that sets it, as `kustomize edit
    set image` writes one (e2e/test_image.py installs the same way)."""
    if not image:
        return subprocess.run([kubectl, "kustomize", str(REPO / "manifests")], capture_output=True, text=True,
                              check=True).stdout
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        raise SystemExit(f"--image {image}: give REGISTRY/NAME:TAG")
    with tempfile.TemporaryDirectory() as overlay:
        (Path(overlay) / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [os.path.relpath(REPO / "manifests", overlay)],
            "images": [{"name": PUBLISHED, "newName": name, "newTag": tag}]}))
        return subprocess.run([kubectl, "kustomize", overlay], capture_output=True, text=True, check=True).stdout


def service_monitor(service: dict) -> dict:
    meta = service["metadata"]
    port = next(p["name"] for p in service["spec"]["ports"] if p["name"] == "metrics")
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "cardpool-operator", "namespace": meta["namespace"], "labels": dict(meta["labels"])},
        "spec": {"selector": {"matchLabels": dict(meta["labels"])},
                 "namespaceSelector": {"matchNames": [meta["namespace"]]},
                 "endpoints": [{"port": port, "path": "/metrics", "interval": "30s"}]},
    }


def rules(namespace: str) -> dict:
    scrape = f'job="{SERVICE}", namespace="{namespace}"'
    # the replica running passes: only the lease holder does, at least every resync (60 s by default)
    leader = f"on(instance) (increase(cardpool_pass_duration_seconds_count{{{scrape}}}[5m]) > 0)"

    def alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict:
        return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
                "annotations": {"summary": summary, "description": description}}

    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "cardpool-operator", "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "cardpool", "app.kubernetes.io/component": "operator"}},
        "spec": {"groups": [{"name": "cardpool", "rules": [
            alert("CardpoolOperatorDown", f"absent(up{{{scrape}}} == 1)", "5m", "critical",
                  "No cardpool operator replica is scraped",
                  f"No replica behind Service {namespace}/{SERVICE} answers /metrics: jobs are neither placed "
                  "nor restarted, and faulty nodes are not drained."),
            alert("CardpoolNoLeader", f"sum(increase(cardpool_pass_duration_seconds_count{{{scrape}}}[10m])) == 0",
                  "5m", "critical", "No cardpool replica is running passes",
                  "Replicas answer but none ran a pass in 10 minutes (a pass runs at least every resync): no "
                  "replica holds the lease cardpool-operator, or the leader's loop is stuck (see "
                  "cardpool_event_loop_lag_seconds)."),
            alert("CardpoolPassesFailing", "sum by (pool) (increase(cardpool_reconcile_errors_total"
                  f"{{{scrape}}}[10m])) > 0", "15m", "warning", "cardpool passes of pool {{ $labels.pool }} fail",
                  "Pool passes or job effects of pool {{ $labels.pool }} have failed for 15 minutes; the "
                  "operator's log holds the traceback ('pass of pool ... failed')."),
            alert("CardpoolJobsStuckRestarting", f'max by (pool) (cardpool_jobs{{{scrape}, phase="Restarting"}} '
                  f"and {leader}) > 0", RESTARTING_FOR, "warning",
                  "TrainingJobs of pool {{ $labels.pool }} have been Restarting for " + RESTARTING_FOR,
                  "{{ $value }} jobs of pool {{ $labels.pool }} are Restarting, and some have been for "
                  f"{RESTARTING_FOR}: longer than the restart backoff. `kubectl get tj -A` and the jobs' "
                  "conditions say what they wait for (cards, a checkpoint, a node)."),
            alert("CardpoolDrainCapReached", f"max by (pool) (cardpool_held_nodes{{{scrape}}} and {leader}) > 0",
                  "15m", "warning", "Pool {{ $labels.pool }} holds faulty nodes back at its drain cap",
                  "{{ $value }} faulty nodes of pool {{ $labels.pool }} are not drained because their group is at "
                  "its drain cap (spec.health.maxDrainedPercent): they get no new workers but keep their pods "
                  "(status.heldNodes lists them). Repair nodes, or raise the cap."),
        ]}]},
    }


def build(kubectl: str, out: Path, image: str | None = None) -> list[Path]:
    manifests = kustomize(kubectl, image)
    service = next(o for o in yaml.safe_load_all(manifests)
                   if o and o["kind"] == "Service" and o["metadata"]["name"] == SERVICE)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        out / "manifests.yaml": "# cardpool: kubectl apply --server-side -f manifests.yaml "
                                "(kubectl kustomize manifests/ of this release)\n" + manifests,
        out / "prometheus.yaml": "# cardpool's ServiceMonitor and alerts, for the Prometheus Operator: "
                                 "kubectl apply --server-side -f prometheus.yaml\n"
                                 + yaml.safe_dump_all([service_monitor(service),
                                                       rules(service["metadata"]["namespace"])],
                                                      sort_keys=False, width=120),
    }
    for path, text in written.items():
        path.write_text(text)
    shutil.copyfile(DASHBOARD, out / DASHBOARD.name)
    return [*written, out / DASHBOARD.name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", required=True, help="kubectl to build manifests/ with")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--image", help=f"the operator image, REGISTRY/NAME:TAG (default {PUBLISHED}:<version>)")
    args = parser.parse_args(argv)
    for path in build(args.kubectl, args.out, args.image):
        print(f"{path} {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
