"""One error type for bad user input, and the wrapper that turns it into exit code 2.

    from tools.core.errors import UserError, run_cli
    raise UserError("unknown model 'resnet19'; choose one of: resnet18, resnet20, ...")

Scripts call `run_cli(main)`: a UserError prints one line `error: ...` on stderr and exits
with status 2, never a traceback. So does an OSError (disk full, permission denied, a file
that vanished), naming the path. Ctrl-C exits 130 and SIGTERM 143 (128 + the signal), each with
one line; files are written atomically, so the run folder keeps the last finished epoch's
last.pth and `--resume` continues from it. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from typing import Callable


class UserError(Exception):
    """Bad input from the user: a config, a flag, a path, a checkpoint. The message is one
    line that names the bad thing and how to fix it."""


def first_line(e: BaseException, *, empty: str | None = None) -> str:
    """The first line of `e`'s message, for a one-line error (torch's and the user's code's messages
    run to many lines); `empty` (default: the exception's type name) when the message is blank.

    >>> first_line(RuntimeError("shape mismatch\\n  at layer 3")), first_line(KeyError()), first_line(OSError(), empty="")
    ('shape mismatch', 'KeyError', '')
    """
    lines = str(e).strip().splitlines()
    return lines[0] if lines else (type(e).__name__ if empty is None else empty)


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt, so no `except Exception` eats it)."""


_OS_HINTS = {
    errno.ENOSPC: "free disk space or write elsewhere (--save-dir, output.root)",
    errno.EDQUOT: "free disk space or write elsewhere (--save-dir, output.root)",
    errno.EACCES: "check the permissions or write elsewhere (--save-dir, output.root)",
    errno.EPERM: "check the permissions or write elsewhere (--save-dir, output.root)",
    errno.EROFS: "the file system is read-only; write elsewhere (--save-dir, output.root)",
}


def os_error_line(e: OSError) -> str:
    """`cannot use <path>: <reason> [errno NAME]; <what to do>` in one line."""
    path = e.filename if e.filename is not None else "a file"
    reason = e.strerror or first_line(e)
    code = f" [{errno.errorcode.get(e.errno, e.errno)}]" if e.errno else ""
    return f"cannot use {path}: {reason}{code}; {_OS_HINTS.get(e.errno, 'check the path')}"


def _terminate(signum, frame) -> None:
    raise Terminated()


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Terminated:
        print(
            f"terminated by SIGTERM (pid {os.getpid()}); finished epochs are kept: --resume <run folder>/last.pth "
            "continues",
            file=sys.stderr,
        )
        raise SystemExit(143) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
