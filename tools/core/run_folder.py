"""Run folders with one owner at a time: a lock first, config.yaml next, COMPLETE last (FAILED on failure).

    from tools.core.run_folder import RunFolder, RunLock

    with RunFolder.new("results", "train", "quickstart", save_dir=None).start(cfg) as run:
        atomic_write_yaml(run.metrics, {"top1": 91.2})   # COMPLETE is written when the block ends
    with RunLock(Path("results/bench/resnet20_baseline"), command="scripts.benchmark --run resnet20_baseline"):
        ...                                                # a second writer gets a one-line UserError (exit 2)

`RunLock(folder)` creates `<folder>/.lock` with O_EXCL before anything else is written there and
holds an flock on it while it runs; the file names the holder's PID, host and command. A second
writer is refused with a UserError naming them. A lock whose holder died (the flock went with it)
is taken over with a one-line notice. The holder itself and the processes it runs (a runner that
starts the script in a subprocess) may write into a folder it holds. A folder inside a held folder
is held too: a second writer may not write into a running pipeline's train/ or a sweep's point.
`clear(folder)` empties a folder for a new run, never one a live run holds.

A `RunFolder` ends with `COMPLETE` (written last, atomically) when its block exits normally, or
with a `FAILED` record holding the one error line when it exits with an error, so a stopped run
never looks finished and a failed one never looks like an unfinished run. Ctrl-C leaves neither:
the folder stays resumable. `start()` refuses a folder holding a finished run (COMPLETE) unless the
run continues it (`start(resume=True)`: a --resume, a pipeline re-run): nothing finished is replaced
silently.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from tools.core.errors import UserError, first_line

# The files a run folder may hold; scripts and readers use these names, never string literals.
CONFIG = "config.yaml"
METRICS = "metrics.yaml"
LOG_CSV = "log.csv"
LOGS = "logs"  # TensorBoard event files
LAST = "last.pth"
BEST = "best_model.pth"
PRUNED_MODEL = "pruned_model.pth"
PRUNED_MODEL_STATE = "pruned_model_state.pth"  # its weights-only twin (tools.modeling.checkpoint.safe_twin)
PRUNED_MODEL_COMPRESSED = "pruned_model_compressed.pth"  # sparse storage (tools.modeling.sparse_storage)
LOCK = ".lock"
COMPLETE = "COMPLETE"
FAILED = "FAILED"
# What each script records beside (or instead of) metrics.yaml, and what the runners keep.
EVAL_METRICS = "eval_metrics.yaml"  # scripts.eval
EXPORT_RECORD = "export.yaml"  # scripts.export_onnx
QUANTIZE_RECORD = "quantize.yaml"  # scripts.quantize
INT8_MODEL = "model.int8.onnx"  # scripts.prune_structured with the onnxruntime-int8 backend (scripts.quantize: beside the FP32 file)
PROFILE = "profile.yaml"  # scripts.profile
LOADER_SPEED = "loader_speed.yaml"  # scripts.loader_speed
LAYER_SPARSITY = "layer_sparsity.yaml"  # scripts.sensitivity
RESULTS_CSV = "results.csv"  # scripts.prune_at_init: one row per point
REPORT = "report.md"  # scripts.report, scripts.pipeline, scripts.prune_at_init
STEPS = "steps.yaml"  # the pipeline's record of finished steps
SWEEP_POINT = "sweep_point.yaml"  # the sweep's record in a point's folder: the fingerprint it ran from
BENCHMARK_RECORD = "benchmark.yaml"  # the benchmark runner's record: command, wall time, host
_ATTEMPTS = 5


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


class RunLock:
    """Exclusive ownership of `folder` (created if missing) for the duration of a `with` block."""

    def __init__(self, folder: str | Path, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.command = command or _command()
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        for enclosing in self.folder.resolve().parents:  # before mkdir: a refused run leaves nothing behind
            _refuse_held(self.folder, enclosing)
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(_ATTEMPTS):  # retried only while the lock file changes under us
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                if self._take_existing(last=attempt == _ATTEMPTS - 1):
                    return
                time.sleep(0.1)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours by O_EXCL; waits only for a prober that backs off
            self._own(fd)
            return
        raise UserError(f"could not take the lock {self.path}: it keeps changing; is another run starting there?")

    def _take_existing(self, last: bool) -> bool:
        """True when the existing lock is now ours (stale, or held by us or our parent); False to
        retry (it vanished, or is being written); UserError when a live process holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        holder = read_holder(self.folder) or {}
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if _is_ours(holder):
                return True  # our own folder, or a runner's we run under: nested, nothing to take or release
            raise UserError(_in_use(self.folder, self.folder, holder)) from None
        if not _same_file(fd, self.path) or (not holder and not last):
            os.close(fd)  # released and replaced meanwhile, or just created and not yet written: look again
            return False
        print(
            f"note: taking over the stale lock of {self.folder}: PID {holder.get('pid', '?')} "
            f"({holder.get('command', 'unknown command')}) is no longer running",
            file=sys.stderr,
        )
        self._own(fd)
        return True

    def _own(self, fd: int) -> None:
        text = yaml.safe_dump(
            {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started_at": _now()},
            sort_keys=False,
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
            os.fsync(fd)
        except OSError as e:  # disk full or read-only: give the error the lock's path, leave no lock behind
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        finally:
            os.close(self._fd)  # drops the flock
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _our_pids() -> set[int]:
    """This process and the processes it runs under (its parent, their parents, ...)."""
    pids, pid = {os.getpid(), os.getppid()}, os.getppid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break  # no /proc (macOS): the parent alone
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid ...": comm may hold spaces
        pids.add(pid)
    return pids


def _is_ours(holder: dict) -> bool:
    return holder.get("host") == socket.gethostname() and holder.get("pid") in _our_pids()


def live_holder(folder: str | Path) -> dict | None:
    """What `<folder>/.lock` says about its holder while another live process holds it (one that
    this process does not run under); None when the folder is free, its lock stale, or ours."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only when no holder has it exclusively
        return None
    except BlockingIOError:
        holder = read_holder(folder) or {}
    finally:
        os.close(fd)  # drops our probe
    return None if _is_ours(holder) else holder


def _in_use(folder: Path, held: Path, holder: dict) -> str:
    who = (
        f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', 'unknown command')}, "
        f"since {holder.get('started_at', '?')})"
    )
    if Path(held).resolve() == Path(folder).resolve():
        return f"{folder} is in use by {who}; wait for it to finish or pass another --save-dir"
    return f"{folder} is inside {held}, which is in use by {who}; wait for it to finish or pass a --save-dir outside it"


def _refuse_held(folder: Path, held: Path) -> None:
    holder = live_holder(held)
    if holder is not None:
        raise UserError(_in_use(folder, held, holder))


def check_not_held(folder: str | Path) -> None:
    """UserError when another live run holds `folder` or a folder around it."""
    folder = Path(folder)
    for held in (folder, *folder.resolve().parents):
        _refuse_held(folder, held)


def clear(folder: str | Path) -> None:
    """Remove `folder` and what an earlier run left there, so none of it is read as a new run's
    result; UserError (nothing removed) while a live run holds it, e.g. an orphaned sweep point."""
    folder = Path(folder)
    if not folder.exists():
        return
    with RunLock(folder, command=f"clearing {folder} for a new run"):
        for path in folder.iterdir():
            if path.name == LOCK:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    try:
        folder.rmdir()
    except OSError:
        pass  # a lock kept by a run we run under (nested), or a file that just appeared: leave the folder


def read_holder(folder: str | Path) -> dict | None:
    """What `<folder>/.lock` says about its holder (pid, host, command, started_at), if anything."""
    try:
        data = yaml.safe_load((Path(folder) / LOCK).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


class RunFolder:
    """One run's folder: its file names, its start (lock, config.yaml) and its end (COMPLETE or FAILED)."""

    def __init__(self, path: str | Path, command: str | None = None):
        self.path = Path(path)
        self.lock = RunLock(self.path, command)
        self._started = False

    @classmethod
    def new(
        cls, root: str | Path, script: str, name: str, save_dir: str | Path | None = None, command: str | None = None
    ) -> RunFolder:
        """`save_dir` as given; otherwise <root>/<script>/<name>, or the first free <name>_2, _3, ...
        The automatic folder is claimed with an atomic mkdir, so two runs never pick the same one."""
        if save_dir:
            return cls(save_dir, command)
        base = Path(root) / script / name
        base.parent.mkdir(parents=True, exist_ok=True)
        path, n = base, 1
        while True:
            try:
                path.mkdir()
                return cls(path, command)
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}_{n}")

    # the files
    @property
    def name(self) -> str:
        return self.path.name

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    config = property(lambda self: self.path / CONFIG)
    metrics = property(lambda self: self.path / METRICS)
    log_csv = property(lambda self: self.path / LOG_CSV)
    logs = property(lambda self: self.path / LOGS)
    last = property(lambda self: self.path / LAST)
    best = property(lambda self: self.path / BEST)
    pruned_model = property(lambda self: self.path / PRUNED_MODEL)
    int8_model = property(lambda self: self.path / INT8_MODEL)

    # start and end
    def start(self, cfg=None, *, resume: bool = False) -> RunFolder:
        """Take the lock, drop an earlier run's COMPLETE / FAILED, save `cfg` (a Config) as config.yaml.
        A finished run (COMPLETE) is refused unless this run continues it (`resume`)."""
        self.lock.acquire()
        self._started = True
        try:
            if not resume and (self.path / COMPLETE).is_file():
                raise UserError(self._finished_line())
            for marker in (COMPLETE, FAILED):
                (self.path / marker).unlink(missing_ok=True)
            if cfg is not None:
                from tools.core.config import save_config

                cfg.output.name = self.path.name
                save_config(cfg, self.config)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __enter__(self) -> RunFolder:
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.complete()
            elif isinstance(exc, Exception) or (isinstance(exc, SystemExit) and exc.code not in (0, None)):
                self.fail(error_line(exc))
        finally:
            self.lock.release()

    def complete(self) -> None:
        from tools.core.io import atomic_write_yaml  # here, not at the top: RunLock alone must not import torch

        atomic_write_yaml(self.path / COMPLETE, {"finished_at": _now(), "command": self.lock.command})

    def fail(self, error: str) -> None:
        """The FAILED record. A run that failed before producing anything leaves only this record
        (its config moves into it), never a config.yaml alone that reads like an unfinished run."""
        from tools.core.io import atomic_write_yaml, read_yaml_mapping

        record = {"error": error, "failed_at": _now(), "command": self.lock.command}
        produced = [p for p in self.path.iterdir() if p.name not in (CONFIG, LOCK, FAILED, COMPLETE)]
        config = read_yaml_mapping(self.config) if not produced else None
        if config is not None:
            record["config"] = config
        atomic_write_yaml(self.path / FAILED, record)
        if config is not None:
            self.config.unlink()

    def _finished_line(self) -> str:
        cont = f", continue it with --resume {self.last}" if self.last.is_file() else ""
        return (
            f"{self.path} holds a finished run (COMPLETE); pass a new --save-dir{cont}, "
            f"or delete the folder to replace it"
        )


def error_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"exited with status {exc.code}"
    first = first_line(exc, empty="")
    return first if isinstance(exc, UserError) else f"{type(exc).__name__}: {first}"
