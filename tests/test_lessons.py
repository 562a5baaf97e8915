"""docs/days/ stays true: `scripts.lessons --check` re-runs days 1-3 and 8 on the synthetic data set
(the lessons' small settings, one thread) and finds the pages as recorded; a printed field renamed
by a script makes the check fail with one line naming the lesson and the field.

    OMP_NUM_THREADS=1 uv run pytest -q tests/test_lessons.py
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import assert_one_line, exit_code_and_error

from scripts import lessons as script
from tools.workflows import lessons
from tools.workflows.lesson_days import LESSONS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def recorded(day: str) -> tuple[dict[str, list[str]], str]:
    text = (ROOT / "docs/days" / LESSONS[day].page).read_text()
    return lessons.recorded_outputs(lessons.read_block(text, "output")), lessons.read_block(text, "problems")


def test_check_passes_for_days_1_2_3_and_8(capsys):
    script.main(["--check", "--days", "1", "2", "3", "8"])
    out = capsys.readouterr().out.splitlines()
    assert out == [f"docs/days/{LESSONS[d].page}: as recorded" for d in ("1", "2", "3", "8")]


def test_renamed_field_fails_in_one_line_naming_lesson_and_field():
    outputs, _ = recorded("1")
    lines = next(iter(outputs.values()))
    assert any("test top1" in line for line in lines)
    renamed = [line.replace("test top1", "test acc1") for line in lines]
    problem = lessons.compare_outputs("day01.md", lines, renamed)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("docs/days/day01.md: printed field 'top1' is now 'acc1'"), problem


def test_check_cli_exits_2_naming_lesson_and_field(monkeypatch, capsys):
    """The whole --check path, with a stand-in for the run whose output renames a field."""
    outputs, problems = recorded("1")
    errors = iter(re.findall(r"^  (error: .*)$", problems, re.MULTILINE))

    def fake_run(run, workspace):
        if run.tiny:  # the day's command: its recorded output with the field renamed
            text = "\n".join(outputs[lessons.shown(run, True)]).replace("test top1", "test acc1")
            return lessons.Result(text)
        return lessons.Result("", next(errors))  # a quoted mistake: its recorded error line

    monkeypatch.setattr(lessons, "run_script", fake_run)
    code, err = exit_code_and_error(script.main, ["--check", "--days", "1"], capsys)
    assert_one_line(code, err)
    assert "docs/days/day01.md" in err and "'top1'" in err and "'acc1'" in err, err


def test_numbers_within_tolerance_pass_and_outside_fail():
    line = "best val top1 12.11% (epoch 2), test top1 12.11% top5 51.95%"
    assert lessons.compare_outputs("day01.md", [line], [line.replace("12.11%", "20.00%")]) is None
    problem = lessons.compare_outputs("day01.md", ["MACs 10.35M  params 272.47K"], ["MACs 10.35M  params 900.00K"])
    assert problem is not None and "'MACs #M params' is 900.00" in problem, problem


def test_unknown_day_is_one_line(capsys):
    code, err = exit_code_and_error(script.main, ["--check", "--days", "99"], capsys)
    assert_one_line(code, err)
    assert "day 99" in err and "14b" in err, err


def test_as_written_runs_the_pages_commands_without_the_small_settings():
    lesson = lessons.as_written(LESSONS["14b"])
    assert all(run.tiny == () for run in lesson.runs) and LESSONS["14b"].runs[0].tiny
    assert lessons.shown(lesson.runs[0], True) == lessons.shown(LESSONS["14b"].runs[0], False)
