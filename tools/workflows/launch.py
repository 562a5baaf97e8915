"""The one way a workflow starts a script step: in this process (the pipeline), or as a fresh
`python -m scripts.<name>` process whose output goes to a log (the sweep) or is shown and logged
line by line (the benchmark).

    >>> script_command("train", ["--config", "cfgs/quickstart.yaml"])[1:]
    ['-m', 'scripts.train', '--config', 'cfgs/quickstart.yaml']
    >>> step = in_process("train", ["--config", "cfgs/quickstart.yaml"])   # a callable; nothing ran yet

In this process a step's failure is its SystemExit / UserError, which the caller reads; a
process's failure is its exit status. `Processes` runs processes so that Ctrl-C can stop them:
after `stop()` no new one starts and the running ones are terminated.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from typing import Callable, TextIO


def script_command(name: str, argv: list[str]) -> list[str]:
    """The command line of a script step run as its own process, with this interpreter."""
    return [sys.executable, "-m", f"scripts.{name}", *argv]


def in_process(name: str, argv: list[str]) -> Callable[[], None]:
    """A step that runs `scripts.<name>.main(argv)` here when called (scripts are found by name: no
    module under tools/ imports scripts/)."""

    def run() -> None:
        importlib.import_module(f"scripts.{name}").main(argv)

    return run


def run_teed(command: list[str], log: TextIO) -> int:
    """Run `command`, its output shown and written to `log` line by line as it happens; its exit status."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )  # lines as they happen, not in blocks
    for line in proc.stdout:
        sys.stdout.write(line)
        log.write(line)
    return proc.wait()


class Processes:
    """The step processes running now. `stop()` (on Ctrl-C) terminates them and lets no more
    start, so a queued step never runs after its workflow was interrupted."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopped = False

    def run(self, cmd: list[str], log) -> int | None:
        """The process's exit status (its output into `log`); None when stopped before it started."""
        with self._lock:
            if self.stopped:
                return None
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            self._running.add(proc)
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._running.discard(proc)

    def stop(self, grace_s: float = 30.0) -> int:
        """Terminate the running processes (SIGTERM: a script keeps its finished epochs, writes no
        COMPLETE), killing any that outlive `grace_s`; returns how many were running."""
        with self._lock:
            self.stopped = True
            procs = list(self._running)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return len(procs)
