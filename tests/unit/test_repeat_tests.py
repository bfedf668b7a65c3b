"""tools/repeat_tests.py: failing test ids are found in pytest's output and counted across runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import repeat_tests

SUMMARY = """\
..F.E
=========================== short test summary info ============================
FAILED tests/integration/test_x.py::test_one[case-1] - AssertionError: assert 1 == 2
FAILED tests/integration/test_x.py::test_two
ERROR tests/reliability/test_y.py::test_three - RuntimeError: port in use
2 failed, 2 passed, 1 error in 3.21s
"""


def test_failures_are_read_from_the_short_summary_with_their_ids() -> None:
    assert repeat_tests.failures_in(SUMMARY) == (
        "tests/integration/test_x.py::test_one[case-1]",
        "tests/integration/test_x.py::test_two",
        "ERROR tests/reliability/test_y.py::test_three",
    )
    assert repeat_tests.failures_in("5 passed in 1.00s") == ()


def test_a_test_failing_every_other_run_is_reported_with_its_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counter = tmp_path / "runs"
    suite = tmp_path / "test_sometimes.py"
    suite.write_text(
        "from pathlib import Path\n"
        f"COUNTER = Path({str(counter)!r})\n"
        "def test_steady():\n"
        "    assert True\n"
        "def test_every_other_run():\n"
        "    runs = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1\n"
        "    COUNTER.write_text(str(runs))\n"
        "    assert runs % 2 == 1\n"
    )
    logs = tmp_path / "logs"

    exit_code = repeat_tests.main(["--runs", "3", "--logs", str(logs), "--rootdir", str(tmp_path), str(suite)])

    out = capsys.readouterr().out
    assert exit_code == 1
    assert "run 1/3: passed" in out
    assert "run 2/3: FAILED: " in out
    assert "run 3/3: passed" in out
    assert "2/3 runs passed" in out
    counted = [line for line in out.splitlines() if line.startswith("  1/3  ")]
    assert len(counted) == 1
    assert counted[0].endswith("test_sometimes.py::test_every_other_run  (runs 2)")
    assert "test_steady" not in out
    assert [log.name for log in logs.iterdir()] == ["run-002.log"]


def test_a_run_that_fails_without_test_ids_is_still_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "test_broken.py"
    broken.write_text("import a_module_that_does_not_exist\n")

    assert (
        repeat_tests.main(["--runs", "1", "--logs", str(tmp_path / "logs"), "--rootdir", str(tmp_path), str(broken)])
        == 1
    )
    out = capsys.readouterr().out
    assert "0/1 runs passed" in out


@pytest.mark.parametrize(
    ("argv", "paths"),
    [
        ([], ["tests/integration", "tests/reliability"]),
        (["--scope", "all"], ["tests"]),
        (["--scope", "all", "tests/unit/test_docs.py"], ["tests/unit/test_docs.py"]),
    ],
)
def test_the_scope_chooses_the_test_paths_and_explicit_paths_win(
    argv: list[str], paths: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str]] = []

    def run_once(number: int, run_paths: list[str], *_: object) -> repeat_tests.RunResult:
        asked.append(list(run_paths))
        return repeat_tests.RunResult(number, 0, (), 0.0, tmp_path / "unused.log")

    monkeypatch.setattr(repeat_tests, "run_once", run_once)

    assert repeat_tests.main(["--runs", "2", *argv]) == 0
    assert asked == [paths, paths]
