"""The command end to end against a fake API server: every error names its object (node, job and namespace,
pool, file), API errors and output errors are told apart, a closed pipe ends quietly with 141, the exit
codes are those README documents."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import ANNOTATION_DRAIN_REQUEST
from cardpool.cli import main as cli

from .examples import EXAMPLES

POOL = yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())
H800 = {"nvidia.com/gpu.product": "NVIDIA-H800"}
JOB = {"metadata": {"namespace": "demo", "name": "llama", "creationTimestamp": "2026-11-25T10:00:00Z"},
       "spec": {"pool": "mixed"}, "status": {"phase": "Running"}}


def refusal(status: int, reason: str, message: str = "", details: dict | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message, "details": details or {}, "code": status})
    return exc


def missing(plural: str, name: str) -> ApiException:
    """The API server's 404 for one object."""
    return refusal(404, "Not Found", f'{plural} "{name}" not found', {"name": name, "kind": plural})


class FakeApi:
    """CoreV1Api and CustomObjectsApi in one, over fixed objects; `refuse`: call name -> exception."""

    def __init__(self, nodes: list[dict] = (), pools: list[dict] = (), jobs: list[dict] = (),
                 refuse: dict[str, ApiException] | None = None) -> None:
        self.api_client = ApiClient()
        self.nodes = {n["metadata"]["name"]: n for n in nodes}
        self.pools, self.jobs, self.refuse, self.patches = list(pools), list(jobs), refuse or {}, []

    def _check(self, call: str) -> None:
        if call in self.refuse:
            raise self.refuse[call]

    def read_node(self, name: str) -> dict:
        self._check("read_node")
        if name not in self.nodes:
            raise missing("nodes", name)
        return self.nodes[name]

    def patch_node(self, name: str, body: dict) -> dict:
        self._check("patch_node")
        self.patches.append((name, body))
        return self.nodes[name]

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> dict:
        self._check(f"list {plural}")
        return {"items": self.pools if plural == "cardpools" else self.jobs}

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str) -> dict:
        self._check(f"list {plural}")
        return {"items": [j for j in self.jobs if j["metadata"]["namespace"] == namespace]}

    def get_cluster_custom_object(self, group: str, version: str, plural: str, name: str) -> dict:
        found = [p for p in self.pools if p["metadata"]["name"] == name]
        if not found:
            raise missing(f"{plural}.{group}", name)
        return found[0]

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                     name: str) -> dict:
        found = [j for j in self.jobs if (j["metadata"]["namespace"], j["metadata"]["name"]) == (namespace, name)]
        if not found:
            raise missing(f"{plural}.{group}", name)
        return found[0]


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "demo"}}]}))
    return str(path)


def run(monkeypatch, kubeconfig: str, api: FakeApi, *argv: str) -> int:
    import kubernetes.client

    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda _client: api)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda _client: api)
    return cli.main(["--kubeconfig", kubeconfig, *argv])


def n1(**annotations: str) -> dict:
    return {"metadata": {"name": "n1", "labels": H800, "annotations": annotations}}


ERRORS = [
    # (name, api, argv, exit code, what stderr says)
    ("drain of a missing node", FakeApi(), ["drain", "gone"], cli.NOT_FOUND, 'node "gone" not found'),
    ("undrain of a missing node", FakeApi(), ["undrain", "gone"], cli.NOT_FOUND, 'node "gone" not found'),
    ("describe of a missing job", FakeApi(), ["describe", "job", "nope"], cli.NOT_FOUND,
     'trainingjob "nope" not found in namespace "demo"'),
    ("describe with -n after the name", FakeApi(jobs=[JOB]), ["describe", "job", "llama", "-n", "other"],
     cli.NOT_FOUND, 'trainingjob "llama" not found in namespace "other"'),
    ("pool of a missing pool", FakeApi(), ["pool", "nope"], cli.NOT_FOUND, 'cardpool "nope" not found'),
    ("map of a missing pool", FakeApi(), ["map", "nope"], cli.NOT_FOUND, 'cardpool "nope" not found'),
    ("jobs without the CRDs", FakeApi(refuse={"list trainingjobs": refusal(404, "Not Found")}), ["jobs"],
     cli.API_ERROR, "cannot list trainingjobs in namespace \"demo\": the API server does not serve trainingjobs "
                    "(are cardpool's CRDs installed?)"),
    ("status, forbidden", FakeApi(refuse={"list cardpools": refusal(
        403, "Forbidden", 'cardpools.cardpool.io is forbidden: User "x" cannot list resource "cardpools"')}),
     ["status"], cli.API_ERROR, 'cannot list cardpools: 403 Forbidden: cardpools.cardpool.io is forbidden'),
    ("drain, patch forbidden", FakeApi(nodes=[n1()], pools=[POOL], refuse={"patch_node": refusal(
        403, "Forbidden", 'nodes "n1" is forbidden')}), ["drain", "n1"], cli.API_ERROR,
     'cannot patch node "n1": 403 Forbidden: nodes "n1" is forbidden'),
    ("drain of a node no pool selects", FakeApi(nodes=[{"metadata": {"name": "n1", "labels": {}}}], pools=[POOL]),
     ["drain", "n1"], cli.API_ERROR, "node n1 is in no CardPool"),
    ("undrain of a node never drained", FakeApi(nodes=[{"metadata": {"name": "n1", "labels": H800}}]),
     ["undrain", "n1"], cli.API_ERROR, "node n1: no drain request to withdraw; the node is not drained"),
]


@pytest.mark.parametrize(("name", "api", "argv", "code", "said"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_their_object(name: str, api: FakeApi, argv: list[str], code: int, said: str, monkeypatch,
                                  kubeconfig: str, capsys) -> None:
    assert run(monkeypatch, kubeconfig, api, *argv) == code
    out = capsys.readouterr()
    assert said in out.err and out.err.startswith("cardpool: ") and out.err.count("\n") == 1
    assert "Traceback" not in out.err and not out.out
    assert not api.patches


DONE = [
    # (name, node, argv, what stdout says, patches written)
    ("drain", n1(), ["drain", "n1", "--reason", "bios"], "node n1: drain requested (bios)",
     [("n1", {"metadata": {"annotations": {ANNOTATION_DRAIN_REQUEST: "bios"}}})]),
    ("drain again", n1(**{ANNOTATION_DRAIN_REQUEST: "bios"}), ["drain", "n1"], "drain already requested (bios)", []),
    ("undrain", n1(**{ANNOTATION_DRAIN_REQUEST: "bios"}), ["undrain", "n1"], "drain request withdrawn",
     [("n1", {"metadata": {"annotations": {ANNOTATION_DRAIN_REQUEST: None}}})]),
]


@pytest.mark.parametrize(("name", "node", "argv", "said", "patches"), DONE, ids=[d[0] for d in DONE])
def test_drain_and_undrain_say_what_they_did(name: str, node: dict, argv: list[str], said: str, patches: list,
                                            monkeypatch, kubeconfig: str, capsys) -> None:
    api = FakeApi(nodes=[node], pools=[POOL])
    assert run(monkeypatch, kubeconfig, api, *argv) == cli.OK
    assert said in capsys.readouterr().out
    assert api.patches == patches


def test_an_empty_jobs_table_says_where_it_looked(monkeypatch, kubeconfig: str, capsys) -> None:
    api = FakeApi(pools=[POOL], jobs=[JOB])
    assert run(monkeypatch, kubeconfig, api, "jobs", "--phase", "failed") == cli.OK
    out = capsys.readouterr()
    assert not out.out and out.err == 'No jobs found in namespace "demo" in phase Failed.\n'
    assert run(monkeypatch, kubeconfig, api, "jobs", "--pool", "mixd", "-A") == cli.OK
    assert capsys.readouterr().err == 'No jobs found in any namespace of pool mixd. There is no CardPool "mixd".\n'
    assert run(monkeypatch, kubeconfig, api, "jobs", "--phase", "failed", "-o", "json") == cli.OK
    assert json.loads(capsys.readouterr().out) == []  # a script asked for data: an empty list, no note
    assert run(monkeypatch, kubeconfig, api, "jobs", "--phase", "RUNNING") == cli.OK
    assert "llama" in capsys.readouterr().out


@pytest.fixture
def closed_pipe() -> Iterator[TextIO]:
    """A pipe whose reader went away, as stdout of `cardpool ... | head -1` once head has its line."""
    read, write = os.pipe()
    os.close(read)
    yield from _stdout(write)


@pytest.fixture
def full_disk() -> Iterator[TextIO]:
    """Every write fails with ENOSPC."""
    yield from _stdout(os.open("/dev/full", os.O_WRONLY))


def _stdout(fd: int) -> Iterator[TextIO]:
    stdout = open(fd, "w")  # noqa: SIM115 (closed below, where what is left in its buffer may fail again)
    yield stdout
    with contextlib.suppress(OSError):
        stdout.close()


@pytest.mark.parametrize("argv", [["jobs"], ["-o", "json", "jobs"], ["-o", "yaml", "status"], ["drain", "n1"],
                                  ["version"], ["--help"], ["jobs", "--help"]])
def test_a_closed_pipe_ends_quietly_with_141(argv: list[str], monkeypatch, kubeconfig: str, capsys,
                                             closed_pipe: TextIO) -> None:
    monkeypatch.setattr("sys.stdout", closed_pipe)
    api = FakeApi(nodes=[n1()], pools=[POOL], jobs=[JOB])
    assert run(monkeypatch, kubeconfig, api, *argv) == cli.PIPE_CLOSED == 141
    assert capsys.readouterr().err == ""


def test_an_output_that_cannot_be_written_is_not_a_cluster_error(monkeypatch, kubeconfig: str, capsys,
                                                                 tmp_path: Path, full_disk: TextIO) -> None:
    monkeypatch.setattr("sys.stdout", full_disk)
    assert run(monkeypatch, kubeconfig, FakeApi(jobs=[JOB]), "jobs") == cli.API_ERROR
    monkeypatch.undo()
    assert capsys.readouterr().err == "cardpool: cannot write the output: No space left on device\n"
    api = FakeApi(pools=[POOL])
    svg = tmp_path / "no-such-dir" / "map.svg"
    api.list_node = lambda: type("Nodes", (), {"items": []})()
    api.list_pod_for_all_namespaces = lambda **_: type("Pods", (), {"items": []})()
    assert run(monkeypatch, kubeconfig, api, "map", "mixed", "--svg", str(svg)) == cli.API_ERROR
    assert capsys.readouterr().err == f"cardpool: cannot write the SVG file {svg}: No such file or directory\n"


def test_kubeconfig_and_connection_errors_say_which(tmp_path: Path, kubeconfig: str, capsys) -> None:
    missing_file = tmp_path / "none"
    assert cli.main(["--kubeconfig", str(missing_file), "jobs"]) == cli.API_ERROR
    assert capsys.readouterr().err == f"cardpool: cannot use the kubeconfig {missing_file}: no such file\n"
    assert cli.main(["jobs", "--kubeconfig", kubeconfig, "--context", "nope"]) == cli.API_ERROR
    assert f"cannot use the kubeconfig {kubeconfig} (context nope)" in capsys.readouterr().err
    assert cli.main(["jobs", "--kubeconfig", kubeconfig]) == cli.API_ERROR  # nothing listens on port 1
    err = capsys.readouterr().err
    assert err.startswith("cardpool: cannot reach the cluster at https://127.0.0.1:1: ") and "refused" in err


def test_watch_shows_again_until_interrupted(monkeypatch, capsys) -> None:
    shown = []

    def fake_show(args, core, custom, namespace, emit):
        shown.append(args.command)
        emit(args, {"n": len(shown)}, lambda: "view")
        if len(shown) == 3:
            raise KeyboardInterrupt
        return cli.OK

    monkeypatch.setattr(cli, "_show", fake_show)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    args = cli.options.parse(["jobs", "-o", "json", "--watch", "0.1"])
    assert cli._run(args, None, None, "ns") == cli.OK
    assert shown == ["jobs"] * 3 and capsys.readouterr().out.count('"n"') == 3
