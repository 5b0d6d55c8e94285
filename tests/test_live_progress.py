"""Progress of a CLI run: one live display on a terminal (a pseudo-terminal here), plain lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

PLAIN_LINE = re.compile(r"^\[\s*\d+\.\ds\] ")


def run_demo(tmp_path, terminal: bool) -> tuple[int, str]:
    env = dict(os.environ, DLT_DATA_DIR=str(tmp_path / "dlt"), COLUMNS="120")
    env.pop("CUSTOMERIO_APP_API_KEY", None)
    env.pop("DESTINATION__DUCKDB__CREDENTIALS", None)
    command = [
        sys.executable,
        "-m",
        "customerio_source.cli",
        "--demo",
        "--scale",
        "tiny",
        "--progress-every",
        "0.2",
        "--tables",
        "campaigns,customers,customer_attributes,messages",
    ]
    if not terminal:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr
    controller, terminal_end = pty.openpty()
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdin=terminal_end, stdout=terminal_end, stderr=terminal_end
    )
    os.close(terminal_end)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_a_terminal_gets_one_live_display_with_the_plan(tmp_path):
    code, out = run_demo(tmp_path, terminal=True)
    assert code == 0, out[-2000:]
    summary = out.index("loaded into duckdb")
    live = out[:summary]
    assert "\x1b[" in live  # drawn and redrawn in place (rich), not appended lines
    assert not any(PLAIN_LINE.match(line) for line in live.splitlines())
    titles = re.findall(r"([\d,]+) / ([\d,]+) requests planned", live)
    assert titles, live[-2000:]
    done, planned = (int(v.replace(",", "")) for v in titles[-1])
    final = int(re.search(r"dataset 'customerio' in [\d.]+s, (\d+) requests", out[summary:]).group(1))
    assert done == final  # the last frame shows every request of the run
    assert abs(planned - final) <= max(3, 0.1 * final)  # the planner's estimate of this run (tiny: a few requests)
    last_frame = live[live.rindex("requests planned") :]
    row = re.search(r"│ customers\s+│\s+([\d,]+) │\s+(\d+) │\s+(\d+) │", last_frame)
    assert row and int(row.group(1).replace(",", "")) > 0 and row.group(2) == row.group(3)


def test_without_a_terminal_the_plain_lines_are_unchanged(tmp_path):
    code, err = run_demo(tmp_path, terminal=False)
    assert code == 0, err[-2000:]
    lines = [line for line in err.splitlines() if PLAIN_LINE.match(line)]
    assert lines, err
    assert "\x1b[" not in err and "planned" not in err and "┃" not in err
    assert any(re.match(r"^\[\s*\d+\.\ds\] customers: \d+ rows, \d+ requests$", line) for line in lines)
    assert any(
        re.match(r"^\[\s*\d+\.\ds\] \d+ requests(, [\d.]+/s|; normalizing and loading\.\.\.)$", line) for line in lines
    )
