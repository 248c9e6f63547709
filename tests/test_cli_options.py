"""The command line as a table: global options before or after the subcommand, -w with or without SECONDS,
--phase in any case, and usage errors (exit 2) that say what is accepted."""

from __future__ import annotations

import pytest

from cardpool.cli import main as cli
from cardpool.cli import options

PARSED = [
    # (argv, expected attributes)
    (["-n", "demo", "-o", "json", "jobs"], {"namespace": "demo", "output": "json", "command": "jobs"}),
    (["jobs", "-n", "demo", "-o", "json"], {"namespace": "demo", "output": "json", "command": "jobs"}),
    (["-n", "demo", "jobs", "-o", "yaml"], {"namespace": "demo", "output": "yaml"}),
    (["-n", "first", "jobs", "-n", "second"], {"namespace": "second"}),
    (["jobs"], {"namespace": None, "output": "table", "all_namespaces": False, "watch": None, "kubeconfig": None}),
    (["status", "-A", "--kubeconfig", "/k", "--context", "c"],
     {"all_namespaces": True, "kubeconfig": "/k", "context": "c"}),
    (["describe", "job", "llama", "--namespace", "demo"], {"namespace": "demo", "name": "llama", "kind": "job"}),
    (["drain", "h800-1", "--reason", "bios", "--kubeconfig", "/k"], {"node": "h800-1", "reason": "bios"}),
    (["drain", "h800-1"], {"reason": None}),
    (["map", "mixed", "--svg", "m.svg", "-o", "json"], {"svg": "m.svg", "output": "json"}),
    # -w: bare, with SECONDS, before or after the subcommand, before a positional
    (["-w", "jobs"], {"watch": 2.0, "command": "jobs"}),
    (["jobs", "-w"], {"watch": 2.0}),
    (["jobs", "-w", "0.5"], {"watch": 0.5}),
    (["--watch", "3", "jobs"], {"watch": 3.0}),
    (["jobs", "--watch=4"], {"watch": 4.0}),
    (["describe", "-w", "job", "llama"], {"watch": 2.0, "kind": "job", "name": "llama"}),
    (["-o", "json", "--watch", "0.1", "jobs"], {"watch": 0.1, "output": "json"}),
    # --phase: the real phases, any case
    (["jobs", "--phase", "running"], {"phase": "Running"}),
    (["jobs", "--phase", "QUEUED", "--pool", "mixed"], {"phase": "Queued", "pool": "mixed"}),
    (["jobs", "--phase", "Failed"], {"phase": "Failed"}),
]


@pytest.mark.parametrize(("argv", "expected"), PARSED, ids=[" ".join(a) for a, _ in PARSED])
def test_options_parse_wherever_they_stand(argv: list[str], expected: dict) -> None:
    args = options.parse(argv)
    assert {k: getattr(args, k) for k in expected} == expected


REFUSED = [
    # (argv, what stderr says)
    (["jobs", "--phase", "Runing"], "unknown phase 'Runing' (choose from Queued, Starting, Running, Restarting, "
                                    "Suspended, Succeeded, Failed)"),
    (["jobs", "--phase", ""], "unknown phase ''"),
    (["jobs", "-o", "xml"], "invalid choice: 'xml'"),
    (["jobs", "-w", "-1"], "'-1' is not a positive number of seconds"),
    (["jobs", "--watch=0"], "'0' is not a positive number of seconds"),
    (["jobs", "--watch=nan"], "'nan' is not a positive number of seconds"),
    (["drain", "n1", "-w"], "--watch does not apply to drain"),
    (["undrain", "n1", "--watch=1"], "--watch does not apply to undrain"),
    (["describe", "pod", "x"], "invalid choice: 'pod'"),
    (["drain"], "the following arguments are required: node"),
    (["jobs", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize(("argv", "said"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_bad_usage_exits_2_and_says_what_is_accepted(argv: list[str], said: str, capsys) -> None:
    assert cli.main(argv) == cli.USAGE
    assert said in capsys.readouterr().err


def test_every_phase_of_the_api_is_accepted() -> None:
    from cardpool.api.trainingjob import Phase

    assert [options.phase(p.value.lower()) for p in Phase] == [p.value for p in Phase]


@pytest.mark.parametrize(("argv", "normalised"), [
    (["-w", "jobs"], ["--watch=2.0", "jobs"]),
    (["jobs", "-w", "5"], ["jobs", "--watch=5"]),
    (["jobs", "--watch"], ["jobs", "--watch=2.0"]),
    (["jobs", "--", "-w"], ["jobs", "--", "-w"]),
    (["jobs", "-w", "-1"], ["jobs", "--watch=-1"]),  # a number, refused later as not positive
])
def test_a_bare_watch_flag_never_takes_the_next_word(argv: list[str], normalised: list[str]) -> None:
    assert options.attach_watch_seconds(argv) == normalised


def test_help_and_version_exit_0(capsys) -> None:
    assert cli.main(["--help"]) == cli.OK
    assert cli.main(["jobs", "--help"]) == cli.OK
    assert "--namespace" in capsys.readouterr().out  # the global options are listed under each subcommand
    assert cli.main(["version"]) == cli.OK and cli.main([]) == cli.OK
