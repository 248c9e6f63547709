"""`cardpool simulate` end to end, offline: the example pool, fleet and trace through seeded failures; figures
that hold together (every job, ETTR and goodput in (0, 1], losses adding up), one job's figures worked out
by hand, the same seed giving the same JSON, plots that are well-formed SVG, and bad input refused with exit
code 2 and a message instead of a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cardpool.cli import main as cli
from cardpool.sim import scenario
from cardpool.sim.inputs import load_fleet, load_pool
from cardpool.sim.tracefile import load_trace

from .examples import EXAMPLES

POOL = str(EXAMPLES / "pool-mixed-vendor.yaml")
FLEET = str(EXAMPLES / "sim" / "fleet.yaml")
TRACE = str(EXAMPLES / "sim" / "jobs.csv")
SVG = "{http://www.w3.org/2000/svg}"
# a harsh fleet-wide rate, so a week sees a score of faults
ARGS = ["simulate", "--pool", POOL, "--nodes", FLEET, "--jobs", TRACE, "--seed", "3", "--mtbf-hours", "8"]


def simulate(capsys, *extra: str) -> tuple[int, str, str]:
    code = cli.main([*ARGS, *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str, Path]:
    """One run of the example with JSON and plots (the figures several tests read)."""
    tmp = tmp_path_factory.mktemp("simulate")
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        code = cli.main([*ARGS, "--json", str(tmp / "run.json"), "--plots", str(tmp / "plots")])
    assert code == cli.OK
    return json.loads((tmp / "run.json").read_text()), table.getvalue(), tmp


def test_every_job_of_the_trace_is_reported_with_figures_in_range(run) -> None:
    figures, table, _ = run
    names = [j.name for j in load_trace(TRACE, load_pool(POOL)[1])]
    assert sorted(j["name"] for j in figures["jobs"]) == sorted(names)
    for name in names:
        assert name in table
    started = [j for j in figures["jobs"] if j["first_placed_h"] is not None]
    assert started, "no job was placed"
    for job in started:
        assert 0 < job["ettr"] <= 1 and 0 < job["goodput"] <= 1, job
        assert job["queue_delay_h"] == pytest.approx(job["first_placed_h"] - job["arrival_h"], abs=2e-3)
        assert job["queue_delay_h"] >= 0
        assert 0 <= job["progress"] <= 1 and job["steps_kept"] <= job["steps"]
        assert job["ran_on"] and all(m in "+".join(job["accelerators"]) for r in job["ran_on"] for m in r.split("+"))
    for job in figures["jobs"]:
        assert job["phase"] in ("Succeeded", "Failed", "Running", "Queued", "Starting", "Restarting")
        assert (job["phase"] == "Succeeded") == (job["progress"] == 1)


def test_pool_figures_add_up_from_the_jobs_and_samples(run) -> None:
    figures, _, _ = run
    pool, jobs, series = figures["pool"], figures["jobs"], figures["series"]
    assert figures["inputs"]["cards"] == 384 and figures["inputs"]["nodes"] == 48
    assert figures["inputs"]["failures"]["system_mtbf_h"] == 8
    # 168 h at one interruption per 8 h: 21 expected; a Poisson count within 4 standard deviations
    faults = sum(pool["faults"].values())
    assert abs(faults - 21) < 4 * math.sqrt(21), pool["faults"]
    assert pool["lost_h"] == pytest.approx(sum(j["lost_h"] for j in jobs), abs=0.01)
    assert pool["lost_h"] == pytest.approx(sum(v["lost_h"] for v in figures["losses"].values()), abs=0.01)
    assert pool["lost_h"] > 0
    restarts: dict[str, int] = {}
    for job in jobs:
        for cause, n in job["restarts"].items():
            restarts[cause] = restarts.get(cause, 0) + n
    assert pool["restarts"] == restarts
    # a lost stretch of training is an interruption the operator recorded as an attempt's end
    assert all(v["interruptions"] <= restarts.get(cause, 0) for cause, v in figures["losses"].items())
    n = len(series["time_h"])
    assert n > 200 and len(series["utilisation"]) == len(series["waiting_jobs"]) == n
    assert series["time_h"][0] == 0 and series["time_h"][-1] == pytest.approx(168, abs=1)
    assert all(0 <= u <= 1 for u in series["utilisation"]) and max(series["utilisation"]) > 0.5
    assert pool["mean_utilisation"] == pytest.approx(sum(series["utilisation"]) / n, abs=1e-3)
    assert pool["mean_queue_length"] == pytest.approx(sum(series["waiting_jobs"]) / n, abs=1e-3)
    assert pool["max_queue_length"] == max(series["waiting_jobs"])
    assert pool["jobs_succeeded"] == sum(1 for j in jobs if j["phase"] == "Succeeded")


def test_the_table_shows_the_pool_figures(run) -> None:
    figures, table, _ = run
    pool = figures["pool"]
    assert f"{100 * pool['mean_utilisation']:.1f}% of the cards held by jobs" in table
    assert f"{pool['mean_ettr']:.3f} mean" in table
    assert "pool mixed: 48 nodes, 384 cards" in table
    assert "an interruption every 8 h over the fleet, repaired in 4 h" in table


def test_the_plots_are_well_formed_svg_with_what_they_show(run) -> None:
    figures, _, tmp = run
    files = {p.name: ET.parse(p).getroot() for p in (tmp / "plots").glob("*.svg")}
    assert sorted(files) == ["ettr.svg", "lost-work.svg", "queue.svg", "utilisation.svg"]
    assert all(root.tag == f"{SVG}svg" for root in files.values())
    bars = [r for r in files["ettr.svg"].iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == sum(1 for j in figures["jobs"] if j["ettr"] is not None)
    lost = [r.find(f"{SVG}title").text for r in files["lost-work.svg"].iter(f"{SVG}rect")
            if r.find(f"{SVG}title") is not None]
    assert lost == [f"{cause} ({v['interruptions']}): {v['lost_h']:.2f}" for cause, v in figures["losses"].items()]
    lines = list(files["utilisation.svg"].iter(f"{SVG}polyline"))
    assert len(lines) == 2 and len(lines[0].get("points").split()) == len(figures["series"]["time_h"])


def test_the_same_seed_gives_the_same_json(run, capsys) -> None:
    figures, _, tmp = run
    code, out, _ = simulate(capsys, "-o", "json")
    assert code == cli.OK and out == (tmp / "run.json").read_text()
    assert json.loads(out) == figures


def test_driving_the_world_in_slices_changes_nothing() -> None:
    name, pool = load_pool(POOL)
    plan = scenario.Scenario(name, pool, load_fleet(FLEET, pool), load_trace(TRACE, pool),
                             scenario.Settings(hours=24, seed=2, failures=scenario.Failures(system_mtbf_h=3)))
    ticks: list[float] = []
    sliced = scenario.run(plan, lambda done, total: ticks.append(done / total))
    whole = plan.world().run()
    whole.close()
    assert len(ticks) == scenario.SLICES and ticks[-1] == 1 and ticks == sorted(ticks)
    assert len(sliced.faults_seen) == len(whole.faults_seen) > 0
    for key, rec in whole.records.items():
        other = sliced.records[key]
        assert (other.timeline.segments, other.restarts, other.phase) == (rec.timeline.segments, rec.restarts,
                                                                          rec.phase)


def test_one_job_alone_spends_its_time_as_worked_out_by_hand(capsys, tmp_path: Path) -> None:
    trace = tmp_path / "solo.yaml"
    trace.write_text("- {name: solo, arrival: 30m, workers: 2, cards_per_worker: 8, accelerators: H800, "
                     "duration: 1h}\n")
    code = cli.main(["simulate", "--pool", POOL, "--nodes", FLEET, "--jobs", str(trace), "--failures", "none",
                     "--interval", "600", "--save-seconds", "10", "--hours", "3", "-o", "json"])
    out, _ = capsys.readouterr()
    assert code == cli.OK
    job = json.loads(out)["jobs"][0]
    # placed on arrival; pods run 20 s later, training 60 s after that; 3,600 s of training with a 10 s save
    # after each 600 s but the last (5 saves): done 3,730 s after placement; its pods gone 5 s later
    assert job["queue_delay_h"] == 0 and job["phase"] == "Succeeded" and job["restarts"] == {}
    assert job["finished_h"] == pytest.approx(0.5 + 3730 / 3600, abs=1e-3)
    assert job["ettr"] == pytest.approx(3600 / 3730, abs=1e-4)
    assert job["goodput"] == pytest.approx(3600 / 3735, abs=1e-4)
    assert job["lost_h"] == 0 and job["steps_kept"] == 3600


def test_jobs_arriving_after_the_horizon_are_reported_as_not_submitted(capsys) -> None:
    code, out, _ = simulate(capsys, "--hours", "50", "-o", "json")
    assert code == cli.OK
    figures = json.loads(out)
    phases = {j["name"]: j["phase"] for j in figures["jobs"]}
    assert len(phases) == 20
    assert [n for n, p in phases.items() if p == "NotSubmitted"] == ["mlu-finetune", "late-sft"]  # at 60 h, 96 h
    assert figures["pool"]["jobs_not_submitted"] == 2 and figures["pool"]["jobs_never_placed"] >= 2
    late = next(j for j in figures["jobs"] if j["name"] == "late-sft")
    assert late["ettr"] is None and late["first_placed_h"] is None and late["progress"] == 0


BAD_INPUT = [
    ("a missing pool file", ["--pool", "nope.yaml"], "cardpool: nope.yaml: cannot read it: No such file"),
    ("a fleet group the pool lacks", ["--nodes", "FLEET_BAD"], "groups[0].name: the pool has no nodeGroup 'h900'"),
    ("a bad trace row", ["--jobs", "TRACE_BAD"], "line 2 (x), column workers: MIN must be at least 1 and at most MAX"),
    ("failures none with a rate", ["--failures", "none"], "--mtbf-hours does not apply with --failures none"),
    ("a negative repair time", ["--repair-hours", "-1"], "argument --repair-hours: '-1' is not a positive number"),
    ("a rack share above 1", ["--rack-share", "1.5"], "'1.5' is not a share between 0 and 1"),
    ("an interval in words", ["--interval", "often"], "argument --interval: 'often' is not a positive number"),
    ("watching a simulation", ["-w"], "--watch does not apply to simulate"),
]


@pytest.mark.parametrize(("extra", "message"), [(e, m) for _, e, m in BAD_INPUT], ids=[n for n, _, _ in BAD_INPUT])
def test_bad_input_is_bad_usage_with_a_message(capsys, tmp_path: Path, extra: list[str], message: str) -> None:
    (tmp_path / "fleet.yaml").write_text("groups: [{name: h900, nodes: 2}]\n")
    (tmp_path / "jobs.csv").write_text("name,arrival,workers,cards_per_worker,accelerators,duration\n"
                                       "x,0,3-2,8,H800,1h\n")
    swap = {"FLEET_BAD": str(tmp_path / "fleet.yaml"), "TRACE_BAD": str(tmp_path / "jobs.csv")}
    code, out, err = simulate(capsys, *[swap.get(a, a) for a in extra])
    assert code == cli.USAGE
    assert message in err and "Traceback" not in err and out == ""


def test_output_with_nowhere_to_go_fails_before_the_run(capsys, tmp_path: Path) -> None:
    code, out, err = simulate(capsys, "--json", str(tmp_path / "missing" / "run.json"))
    assert code == cli.API_ERROR and out == ""
    assert f"cannot write the JSON file {tmp_path}/missing/run.json: no directory" in err
