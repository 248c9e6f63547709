"""`make release`'s assets (release/build.py) on the local cluster (issue 16, point 4): dist/manifests.yaml is
the kustomize install in one file, and `kubectl apply --server-side -f` takes it as a user runs it; applying it
again changes nothing. The objects it added are removed afterwards (the session's CRDs and admission policies,
which the crds fixture installed, stay), so no other test sees them.

prometheus.yaml is only parsed here: its kinds need the Prometheus Operator's CRDs, which this cluster has not.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import yaml

from localkube.config import REPO, bindir
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

_spec = importlib.util.spec_from_file_location("release_build", REPO / "release" / "build.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)
Key = tuple[str, str, str]


def key(obj: dict) -> Key:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def exists(kube: Kube, k: Key) -> bool:
    kind, namespace, name = k
    args = ["get", kind, name, "-o", "name", "--ignore-not-found"] + (["-n", namespace] if namespace else [])
    return bool(kube.run(*args).stdout.strip())


def test_make_releases_manifests_apply_server_side(kube: Kube, crds: list[str], tmp_path: Path) -> None:
    kubectl = str(bindir() / "kubectl")
    image = "registry.example:5000/ml/cardpool-operator:1.2.3"
    written = release.build(kubectl, tmp_path, image)
    assert sorted(p.name for p in written) == ["cardpool-dashboard.json", "manifests.yaml", "prometheus.yaml"]
    manifest = tmp_path / "manifests.yaml"
    objects = [o for o in yaml.safe_load_all(manifest.read_text()) if o]
    built = subprocess.run([kubectl, "kustomize", str(REPO / "manifests")], capture_output=True, text=True,
                           check=True).stdout
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [image]
    # otherwise the kustomize install as it is
    kustomized = [o for o in yaml.safe_load_all(built) if o]
    published = next(o for o in kustomized if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    tag = published["containers"][0]["image"].rpartition(":")[2]
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        c["image"] = f"{release.PUBLISHED}:{tag}"
    assert objects == kustomized
    assert sorted({o["kind"] for o in objects}) == [
        "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Namespace",
        "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding"]
    assert [o["kind"] for o in yaml.safe_load_all((tmp_path / "prometheus.yaml").read_text())] == [
        "ServiceMonitor", "PrometheusRule"]
    assert json.loads((tmp_path / "cardpool-dashboard.json").read_text())["panels"]

    before = {key(o) for o in objects if exists(kube, key(o))}
    added = [key(o) for o in objects if key(o) not in before and o["kind"] != "CustomResourceDefinition"]
    try:
        kube.run("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
        missing = [key(o) for o in objects if not exists(kube, key(o))]
        assert not missing, missing
        kube.run("wait", "--for", "condition=Established", "--timeout=60s",
                 *(f"crd/{o['metadata']['name']}" for o in objects if o["kind"] == "CustomResourceDefinition"))
        diff = kube.run("diff", "--server-side", "--force-conflicts", "-f", str(manifest), check=False)
        assert diff.returncode == 0, diff.stdout  # 1 would mean the second apply changes something
    finally:
        # namespaced objects first, then the cluster's; a namespace of our own last, awaited until gone
        for kind, namespace, name in sorted(added, key=lambda k: (k[0] == "Namespace", not k[1])):
            kube.run("delete", kind, name, "--ignore-not-found", "--wait=false",
                     *(["-n", namespace] if namespace else []))

        def gone() -> bool:
            left = [k for k in added if exists(kube, k)]
            if left:
                raise NotYet(f"left: {left}")
            return True

        wait_for("the objects manifests.yaml added to be deleted", gone, timeout=120)


PROMTOOL_SH = REPO / "e2e" / "cluster" / "promtool.sh"
SCRAPE = 'job="cardpool-operator-metrics", namespace="cardpool-system"'


def series(name: str, labels: str, values: str) -> dict:
    return {"series": f"{name}{{{SCRAPE}, {labels}}}", "values": values}


def scrape(instance: str, passes: str) -> list[dict]:
    """A replica: scraped, and its pass count (rising on the one that leads)."""
    return [series("up", f'instance="{instance}"', "1x90"),
            series("cardpool_pass_duration_seconds_count", f'instance="{instance}"', passes)]


LEADS, STANDS_BY = "0+1x90", "0x90"
# (alert, the input series, when, the labels and value it fires with, or None for no alert)
CASES = [
    ("CardpoolOperatorDown", [series("up", 'instance="a"', "0x30")], "10m", ({}, "")),
    ("CardpoolOperatorDown", [series("up", 'instance="a"', "1x30")], "10m", None),
    ("CardpoolNoLeader", scrape("a", STANDS_BY) + scrape("b", STANDS_BY), "20m", ({}, "")),
    ("CardpoolNoLeader", scrape("a", LEADS) + scrape("b", STANDS_BY), "20m", None),
    ("CardpoolPassesFailing", [series("cardpool_reconcile_errors_total", 'instance="a", pool="m"', "0+1x40")],
     "30m", ({"pool": "m"}, "")),
    ("CardpoolPassesFailing", [series("cardpool_reconcile_errors_total", 'instance="a", pool="m"', "5x40")],
     "30m", None),
    ("CardpoolJobsStuckRestarting", [*scrape("a", LEADS),
                                     series("cardpool_jobs", 'instance="a", pool="m", phase="Restarting"', "2x60")],
     "45m", ({"pool": "m"}, "2")),
    # a replica that lost the lease keeps its last figures: they are not the pool's
    ("CardpoolJobsStuckRestarting", scrape("a", LEADS) + scrape("b", STANDS_BY) + [
        series("cardpool_jobs", 'instance="a", pool="m", phase="Restarting"', "0x60"),
        series("cardpool_jobs", 'instance="b", pool="m", phase="Restarting"', "2x60")], "45m", None),
    ("CardpoolJobsStuckRestarting", [*scrape("a", LEADS), series(
        "cardpool_jobs", 'instance="a", pool="m", phase="Restarting"', "2x20 0x40")], "45m", None),
    ("CardpoolDrainCapReached", [*scrape("a", LEADS), series("cardpool_held_nodes", 'instance="a", pool="m"',
                                                              "2x60")], "30m", ({"pool": "m"}, "2")),
    ("CardpoolDrainCapReached", [*scrape("a", LEADS), series("cardpool_held_nodes", 'instance="a", pool="m"',
                                                              "0x60")], "30m", None),
    # held only for a moment (a drain ended and the next node took its place): no alert
    ("CardpoolDrainCapReached", [*scrape("a", LEADS), series("cardpool_held_nodes", 'instance="a", pool="m"',
                                                              "0x20 1x5 0x35")], "30m", None),
]


def annotations(rule: dict, labels: dict[str, str], value: str) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them, for the few template forms the rules use."""
    out = {}
    for key, text in rule["annotations"].items():
        for name, label in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", label)
        out[key] = text.replace("{{ $value | humanize }}", value).replace("{{ $value }}", value)
    assert all("{{" not in t for t in out.values()), out
    return out


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """promtool (Prometheus's own rule checker and evaluator) checks the PrometheusRule's rules and runs them over
    series made up for each alert: it fires, with its labels and text, and stays quiet in the case next to it."""
    promtool = subprocess.run(["bash", str(PROMTOOL_SH)], capture_output=True, text=True, check=True).stdout.strip()
    spec = release.rules("cardpool-system")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    check = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = {r["alert"]: r for group in spec["groups"] for r in group["rules"]}
    assert {case[0] for case in CASES} == set(rules)
    tests = []
    for alert, inputs, at, fires in CASES:
        expected = []
        if fires is not None:
            labels, value = fires
            expected = [{"exp_labels": {**labels, **rules[alert]["labels"]},
                         "exp_annotations": annotations(rules[alert], labels, value)}]
        tests.append({"interval": "1m", "input_series": inputs,
                      "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]})
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": tests}))
    run = subprocess.run([promtool, "test", "rules", str(tmp_path / "tests.yaml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
