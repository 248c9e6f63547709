"""The job trace of `cardpool simulate`, CSV or YAML: each column read as docs/simulate.md says, and every
refusal naming the row and the column."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from cardpool.sim.inputs import InputError, load_pool
from cardpool.sim.tracefile import load_trace
from cardpool.sim.world import JobTrace

from ..examples import EXAMPLES

HEADER = "name,arrival,workers,cards_per_worker,accelerators,mode,steps,step_time,duration,priority"


@pytest.fixture(scope="module")
def pool():
    return load_pool(EXAMPLES / "pool-mixed-vendor.yaml")[1]


def csv_trace(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "jobs.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD = [
    ("hours, fixed size, duration at 1 s steps", "a,2h,4,8,H800,,,,3h,",
     JobTrace("a", 7200.0, 8, 4, 4, ("H800",), 10800, 1.0)),
    ("elastic, several models most preferred first, priority", "b,90,2-6,4,H800 A100,,,,30m,-5",
     JobTrace("b", 90.0, 4, 2, 6, ("H800", "A100"), 1800, 1.0, -5)),
    ("steps and step time", "c,1.5d,8,8,Ascend910B,,1000,1.5s,,10",
     JobTrace("c", 129600.0, 8, 8, 8, ("Ascend910B",), 1000, 1.5, 10)),
    ("duration cut in steps of step_time, rounded up", "d,0,1,8,H800,,,7s,1m,",
     JobTrace("d", 0.0, 8, 1, 1, ("H800",), 9, 7.0)),
    ("mixed, | between models, mode in any case", "e,15m,4-8,8,H800|Ascend910B,mixed,,,1d,",
     JobTrace("e", 900.0, 8, 4, 8, ("H800", "Ascend910B"), 86400, 1.0, 0, "Mixed")),
    ("cards that fit on some of its models only", "f,0,1,8,H800 A100,,,,1h,",
     JobTrace("f", 0.0, 8, 1, 1, ("H800", "A100"), 3600, 1.0)),
]


@pytest.mark.parametrize(("row", "job"), [(r, j) for _, r, j in GOOD], ids=[n for n, _, _ in GOOD])
def test_a_csv_row_becomes_the_job_it_says(tmp_path: Path, pool, row: str, job: JobTrace) -> None:
    assert load_trace(csv_trace(tmp_path, row), pool) == [job]


def test_yaml_takes_the_same_columns_as_a_list_or_under_jobs(tmp_path: Path, pool) -> None:
    jobs = [{"name": "a", "arrival": "2h", "workers": 4, "cards_per_worker": 8, "accelerators": "H800",
             "duration": "3h"},
            {"name": "b", "arrival": 90, "workers": "2-6", "cards_per_worker": 4, "accelerators": ["H800", "A100"],
             "duration": "30m", "priority": -5}]
    expected = [JobTrace("b", 90.0, 4, 2, 6, ("H800", "A100"), 1800, 1.0, -5),
                JobTrace("a", 7200.0, 8, 4, 4, ("H800",), 10800, 1.0)]
    for document in (jobs, {"jobs": jobs}):
        path = tmp_path / "jobs.yaml"
        path.write_text(yaml.safe_dump(document))
        assert load_trace(path, pool) == expected  # in arrival order


def test_names_default_by_order_and_comments_are_skipped(tmp_path: Path, pool) -> None:
    path = csv_trace(tmp_path, "# a comment", ",1h,1,8,H800,,,,1h,", "", ",0,1,8,H800,,,,1h,",
                     header="# the header comes after this\n" + HEADER)
    assert [j.name for j in load_trace(path, pool)] == ["job-002", "job-001"]


def test_the_example_trace_is_read_whole(pool) -> None:
    jobs = load_trace(EXAMPLES / "sim" / "jobs.csv", pool)
    assert len(jobs) == 20 and len({j.name for j in jobs}) == 20
    assert jobs[0].arrival_s == 0 and all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(jobs))


BAD = [
    ("no arrival", "a,,4,8,H800,,,,1h,", "line 2 (a), column arrival: required, and missing"),
    ("an arrival that is no duration", "a,soon,4,8,H800,,,,1h,",
     "line 2 (a), column arrival: expected a duration such as 90s, 15m, 2h or 1.5d, got 'soon'"),
    ("a negative arrival", "a,-1h,4,8,H800,,,,1h,", "column arrival: expected a duration"),
    ("workers min above max", "a,0,4-2,8,H800,,,,1h,",
     "line 2 (a), column workers: MIN must be at least 1 and at most MAX, got '4-2'"),
    ("no workers", "a,0,0,8,H800,,,,1h,", "column workers: MIN must be at least 1"),
    ("workers in words", "a,0,four,8,H800,,,,1h,", "column workers: expected N or MIN-MAX (e.g. 4 or 2-8), got 'four'"),
    ("cards per worker not a number", "a,0,1,x,H800,,,,1h,",
     "line 2 (a), column cards_per_worker: expected a whole number, got 'x'"),
    ("more cards per worker than a node has", "a,0,1,16,H800 A100,,,,1h,",
     "column cards_per_worker: 16 cards per worker fit on no node of H800, A100 (8, 8 cards a node)"),
    ("a model the pool lacks", "a,0,1,8,H900,,,,1h,",
     "line 2 (a), column accelerators: the pool has no H900 (its models: H800, A100, Ascend910B"),
    ("a model twice", "a,0,1,8,H800 H800,,,,1h,", "column accelerators: a model is named twice"),
    ("mixed on one model", "a,0,2,8,H800,Mixed,,,1h,", "column accelerators: mode Mixed needs at least two models"),
    ("an unknown mode", "a,0,2,8,H800,Spread,,,1h,", "column mode: expected Homogeneous or Mixed, got 'Spread'"),
    ("no length", "a,0,1,8,H800,,,,,", "column steps: give steps (with step_time) or duration"),
    ("steps and duration", "a,0,1,8,H800,,100,1s,1h,", "column duration: give steps (with step_time) or duration, "
                                                      "not both"),
    ("steps without a step time", "a,0,1,8,H800,,100,,,", "column step_time: required with steps, and missing"),
    ("a zero step time", "a,0,1,8,H800,,100,0s,,", "column step_time: must be more than 0"),
    ("a zero duration", "a,0,1,8,H800,,,,0,", "column duration: must be more than 0"),
    ("a priority out of range", "a,0,1,8,H800,,,,1h,5000", "column priority: must be between -1000 and 1000, got 5000"),
    ("a name that is no DNS label", "Big_Job,0,1,8,H800,,,,1h,", "line 2 (Big_Job), column name: must be a DNS label"),
    ("more workers than a TrainingJob may have", "a,0,200000,8,H800,,,,1h,",
     "column (all): the TrainingJob it makes is refused: spec.workers.size.min: Input should be less than or equal "
     "to 100000"),
]


@pytest.mark.parametrize(("row", "message"), [(r, m) for _, r, m in BAD], ids=[n for n, _, _ in BAD])
def test_a_bad_row_is_refused_naming_its_line_and_column(tmp_path: Path, pool, row: str, message: str) -> None:
    path = csv_trace(tmp_path, "ok,0,1,8,H800,,,,1h,", row)
    with pytest.raises(InputError) as refused:
        load_trace(path, pool)
    assert str(refused.value).startswith(f"{path}: ")
    assert message.replace("line 2", "line 3") in str(refused.value)


def test_every_bad_row_is_listed_and_a_repeated_name_points_at_the_first(tmp_path: Path, pool) -> None:
    path = csv_trace(tmp_path, "a,0,1,8,H800,,,,1h,", "a,1h,1,8,H800,,,,1h,", "b,soon,1,8,H800,,,,1h,")
    with pytest.raises(InputError) as refused:
        load_trace(path, pool)
    assert str(refused.value) == (f"{path}: 2 problems:\n"
                                  "  line 3 (a), column name: 'a' is already the name of line 2\n"
                                  "  line 4 (b), column arrival: expected a duration such as 90s, 15m, 2h or 1.5d, "
                                  "got 'soon'")


BAD_FILES = [
    ("an unknown column", "name,arrival,workers,cards_per_worker,accelerators,gpus\n",
     "jobs.csv: line 1: unknown column(s) 'gpus' (columns: name, arrival"),
    ("a required column missing", "name,arrival,workers,accelerators\n",
     "jobs.csv: line 1: the header lacks the required column(s) cards_per_worker"),
    ("a row longer than the header", f"{HEADER}\na,0,1,8,H800,,,,1h,,extra\n",
     "jobs.csv: line 2: 11 cells for 10 columns"),
    ("no jobs", f"# nothing yet\n{HEADER}\n", "jobs.csv: no jobs in the trace"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD_FILES], ids=[n for n, _, _ in BAD_FILES])
def test_a_bad_csv_file_is_refused(tmp_path: Path, pool, text: str, message: str) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(text)
    with pytest.raises(InputError) as refused:
        load_trace(path, pool)
    assert message in str(refused.value)


BAD_YAML = [
    ("not a list", {"name": "a"}, "expected a list of jobs (or jobs: [...]), got dict"),
    ("a job that is no mapping", ["a"], "jobs[0]: expected a mapping of columns, got str"),
    ("an unknown column", [{"name": "a", "gpus": 8}], "jobs[0]: unknown column(s) 'gpus'"),
    ("a bad value", [{"name": "a", "arrival": "1h", "workers": 1, "cards_per_worker": True, "accelerators": "H800",
                      "duration": "1h"}], "jobs[0] (a), column cards_per_worker: expected a whole number, got True"),
    ("a bad first column", [{"arrival": "1h", "workers": "1-", "cards_per_worker": 8, "accelerators": "H800",
                             "duration": "1h"}], "jobs[0] (job-001), column workers: expected N or MIN-MAX"),
]


@pytest.mark.parametrize(("document", "message"), [(d, m) for _, d, m in BAD_YAML], ids=[n for n, _, _ in BAD_YAML])
def test_a_bad_yaml_trace_is_refused_naming_the_entry_and_column(tmp_path: Path, pool, document: object,
                                                                 message: str) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(InputError) as refused:
        load_trace(path, pool)
    assert message in str(refused.value)
