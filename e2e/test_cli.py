"""The `cardpool` command against the real local cluster, as a user runs it: kubeconfig, namespace, output
formats and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from jobs import TORCH, make_pool, submit, wait_phase
from localkube.config import REPO
from localkube.testing import Kube


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def cardpool(kube: Kube, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardpool.cli.main", "--kubeconfig", str(kube.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO / "operator"),
                                                                            "PATH": "/usr/bin:/bin"})


RUN: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60,
                       "env": {"PYTHONPATH": str(REPO / "operator"), "PATH": "/usr/bin:/bin"}}


def test_the_cli_shows_jobs_pools_and_a_jobs_story(kube: Kube, namespace: str, pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH)
    wait_phase(kube, namespace, name, "Running")

    rows = json.loads(cardpool(kube, "-n", namespace, "-o", "json", "jobs").stdout)
    assert [(r["name"], r["phase"], r["size"], r["accelerator"]) for r in rows] == [(name, "Running", "4/4", "H800")]
    assert json.loads(cardpool(kube, "-n", namespace, "-o", "json", "jobs", "--phase", "Queued").stdout) == []

    table = cardpool(kube, "-n", namespace, "jobs")
    assert table.returncode == 0 and name in table.stdout and "Running" in table.stdout

    story = cardpool(kube, "-n", namespace, "describe", "job", name)
    assert story.returncode == 0
    assert "Attempts" in story.stdout and "GangPlaced" in story.stdout and "h800" in story.stdout

    groups = yaml.safe_load(cardpool(kube, "-o", "yaml", "pool", pool).stdout)["groups"]
    h800 = next(g for g in groups if g["name"] == "h800")
    assert h800["allocatedCards"] == 32

    status = cardpool(kube, "-n", namespace, "status")
    assert status.returncode == 0 and pool in status.stdout and "1 Running" in status.stdout

    missing = cardpool(kube, "-n", namespace, "describe", "job", "no-such-job")
    assert missing.returncode == 3 and "not found" in missing.stderr

    # --watch streams until Ctrl-C, which ends it cleanly
    import signal
    import time

    watch = subprocess.Popen([sys.executable, "-m", "cardpool.cli.main", "--kubeconfig", str(kube.kubeconfig),
                              "-n", namespace, "-o", "json", "--watch", "0.3", "jobs"], stdout=subprocess.PIPE,
                             text=True, env={"PYTHONPATH": str(REPO / "operator"), "PATH": "/usr/bin:/bin"},
                             # as from a terminal: a suite started in the background (`cmd &` in a script)
                             # hands its children SIGINT ignored, and the Ctrl-C below would never arrive
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    import select

    seen, deadline = 0, time.monotonic() + 30  # wait for two rounds of output, at most 30 s
    while seen < 2 and time.monotonic() < deadline:
        if select.select([watch.stdout], [], [], 1)[0]:
            seen += f'"name": "{name}"' in watch.stdout.readline()
    watch.send_signal(signal.SIGINT)
    watch.communicate(timeout=30)
    assert seen >= 2, f"--watch showed the job {seen} times in 30 s"
    assert watch.returncode == 0  # Ctrl-C ends a watch cleanly


def test_drain_and_undrain_go_through_the_operators_drain(kube: Kube, namespace: str, pool: str) -> None:
    from jobs import drained, get_job, rank_nodes, returned, wait_attempt
    from localkube.waiting import wait_for

    name = submit(kube, namespace, pool, TORCH)
    wait_attempt(kube, namespace, name, 1)
    node = rank_nodes(kube, namespace, name, 1)[2]
    try:
        done = cardpool(kube, "drain", node, "--reason", "bios update")
        assert done.returncode == 0 and "drain requested" in done.stdout
        record = wait_for(f"node {node} to be drained", lambda: drained(kube, node), timeout=60)
        assert record["reason"] == "DrainRequested"
        status = wait_attempt(kube, namespace, name, 2)
        assert status["lastFailure"]["reason"] == "DrainRequested" and status["restarts"]["counted"] == 0
        assert node not in rank_nodes(kube, namespace, name, 2).values()
    finally:
        assert cardpool(kube, "undrain", node).returncode == 0
    wait_for(f"node {node} to be returned without probation", lambda: returned(kube, node), timeout=30)
    assert get_job(kube, namespace, name)["status"]["attempt"] == 2  # the job is not moved back
    assert cardpool(kube, "drain", "no-such-node").returncode == 3


def test_the_card_map_shows_a_running_job_in_the_terminal_and_as_an_svg(kube: Kube, namespace: str, pool: str,
                                                                        tmp_path) -> None:
    import io

    import cairosvg
    from PIL import Image

    from cardpool.cli import cardmap
    from jobs import rank_nodes, wait_attempt

    name = submit(kube, namespace, pool, TORCH)
    wait_attempt(kube, namespace, name, 1)
    nodes = set(rank_nodes(kube, namespace, name, 1).values())
    image = tmp_path / "map.svg"
    shown = cardpool(kube, "-o", "json", "map", pool, "--svg", str(image))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    letter = next(k for k, v in data["jobs"].items() if v == f"{namespace}/{name}")
    rows = {r["node"]: r["cells"] for r in data["nodes"]}
    assert all(rows[n] == letter * 8 for n in nodes)  # the job's 4 nodes: 8 busy cards each
    png = Image.open(io.BytesIO(cairosvg.svg2png(url=str(image)))).convert("RGB")
    order = [r["node"] for r in data["nodes"]]
    expected = tuple(int(cardmap.cell_color(letter)[i:i + 2], 16) for i in (1, 3, 5))
    assert all(png.getpixel(cardmap.cell_center(order.index(n), 0)) == expected for n in nodes)
    assert cardpool(kube, "map", pool).returncode == 0


def test_cli_errors_name_their_object_and_options_go_anywhere(kube: Kube, quiet_operator: Any, namespace: str,
                                                              pool: str) -> None:
    # drain / undrain: the node named in every answer; an undrain with nothing to withdraw is refused
    gone = cardpool(kube, "drain", "no-such-node")
    assert (gone.returncode, gone.stderr) == (3, 'cardpool: node "no-such-node" not found\n')
    gone = cardpool(kube, "undrain", "no-such-node")
    assert (gone.returncode, gone.stderr) == (3, 'cardpool: node "no-such-node" not found\n')
    node = next(n.metadata.name for n in kube.core.list_node(label_selector="cambricon.com/mlu.model=MLU590").items
                if not (n.metadata.annotations or {}).get("cardpool.io/drain"))
    never = cardpool(kube, "undrain", node)
    assert (never.returncode, never.stdout) == (1, "")
    assert never.stderr == f"cardpool: node {node}: no drain request to withdraw; the node is not drained\n"
    assert "cardpool.io/drain-request" not in (kube.core.read_node(node).metadata.annotations or {})

    # global options after the subcommand (and after its arguments), as kubectl takes them
    name = submit(kube, namespace, pool, TORCH)
    after = subprocess.run([sys.executable, "-m", "cardpool.cli.main", "jobs", "--pool", pool, "-o", "json",
                            "-n", namespace, "--kubeconfig", str(kube.kubeconfig)], **RUN)
    assert after.returncode == 0, after.stderr
    assert [r["name"] for r in json.loads(after.stdout)] == [name]
    story = cardpool(kube, "describe", "job", name, "-n", namespace, "-o", "json")
    assert story.returncode == 0 and json.loads(story.stdout)["job"]["metadata"]["name"] == name
    elsewhere = cardpool(kube, "describe", "job", name, "-n", f"{namespace}-x")
    assert (elsewhere.returncode, elsewhere.stderr) == (
        3, f'cardpool: trainingjob "{name}" not found in namespace "{namespace}-x"\n')

    # --phase: the real phases, any case; anything else is bad usage that lists them
    bad = cardpool(kube, "jobs", "-n", namespace, "--phase", "Runing")
    assert bad.returncode == 2
    assert "unknown phase 'Runing' (choose from Queued, Starting, Running, Restarting, Suspended, Succeeded, " \
           "Failed)" in bad.stderr
    empty = cardpool(kube, "jobs", "-n", namespace, "--phase", "failed")
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == f'No jobs found in namespace "{namespace}" in phase Failed.\n'


def test_output_into_a_reader_that_stops_early_ends_quietly(kube: Kube, namespace: str, pool: str) -> None:
    import os
    import shlex

    name = submit(kube, namespace, pool, TORCH)
    command = shlex.join([sys.executable, "-m", "cardpool.cli.main", "--kubeconfig", str(kube.kubeconfig),
                          "-n", namespace])
    # as a user pipes it: head takes the first line and leaves; the exit status of cardpool is that of a Unix
    # tool (0 if it had written everything already, else 141 as for SIGPIPE), never an error message
    for args, first in (("jobs", "NAMESPACE"), ("-o json jobs", "["), ("-o json --watch 0.2 jobs", "[")):
        piped = subprocess.run(["bash", "-c", f"set -o pipefail; {command} {args} | head -1; "
                                              f"echo \"exit ${{PIPESTATUS[0]}}\" >&2"], **RUN)
        assert piped.stdout.startswith(first), piped
        assert piped.stderr in ("exit 0\n", "exit 141\n"), piped.stderr  # no traceback, no "cannot reach"
    assert piped.stderr == "exit 141\n"  # the watch went on writing after head left
    # a reader gone before the first byte: always the broken pipe, 141, nothing said
    for args in (["jobs"], ["-o", "yaml", "describe", "job", name], ["--help"]):
        read, write = os.pipe()
        os.close(read)
        gone = subprocess.run([*shlex.split(command), *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60, env=RUN["env"])
        os.close(write)
        assert (gone.returncode, gone.stderr) == (141, ""), (args, gone.stderr)
