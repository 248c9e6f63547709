"""The release's Prometheus assets (release/build.py): the ServiceMonitor scrapes the metrics Service of
manifests/, and the alerts use only metrics the operator exports. The whole `make release` output, built with
kubectl and applied to a cluster, is e2e/test_release.py's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from .test_metrics import exported

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("release_build", ROOT / "release" / "build.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)
SERVICE = yaml.safe_load((ROOT / "manifests" / "operator" / "service.yaml").read_text())


def test_the_service_monitor_selects_the_metrics_service_and_its_port() -> None:
    monitor = release.service_monitor(SERVICE)
    assert monitor["kind"] == "ServiceMonitor"
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= SERVICE["metadata"]["labels"].items() and labels
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [SERVICE["metadata"]["namespace"]]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in SERVICE["spec"]["ports"]]


def test_every_alert_uses_only_exported_metrics_and_scrapes_of_the_service() -> None:
    rule = release.rules("cardpool-system")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert sorted(alerts) == ["CardpoolDrainCapReached", "CardpoolJobsStuckRestarting", "CardpoolNoLeader",
                              "CardpoolOperatorDown", "CardpoolPassesFailing"]
    used = {m for r in alerts.values() for m in re.findall(r"cardpool_\w+", r["expr"])}
    assert used and used <= exported(), used - exported()
    for name, r in alerts.items():
        # every selector names the Service's scrape job, so another job's series of the same name never count
        selectors = re.findall(r"(?:cardpool_\w+|up)\{([^}]*)\}", r["expr"])
        assert selectors and all(f'job="{release.SERVICE}"' in s for s in selectors), (name, r["expr"])
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["description"]
    assert '"Restarting"' in alerts["CardpoolJobsStuckRestarting"]["expr"]


def test_the_assets_are_one_yaml_stream_each(tmp_path: Path, monkeypatch) -> None:
    """build() with a stand-in for kubectl's kustomize output (the real one runs in e2e/test_release.py)."""
    text = yaml.safe_dump(SERVICE)
    monkeypatch.setattr(release, "kustomize", lambda kubectl, image: text)
    written = release.build("kubectl", tmp_path)
    assert sorted(p.name for p in written) == ["cardpool-dashboard.json", "manifests.yaml", "prometheus.yaml"]
    assert [o["kind"] for o in yaml.safe_load_all((tmp_path / "prometheus.yaml").read_text())] == [
        "ServiceMonitor", "PrometheusRule"]
    assert (tmp_path / "cardpool-dashboard.json").read_bytes() == release.DASHBOARD.read_bytes()
