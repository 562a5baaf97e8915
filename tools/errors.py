"""One error type for bad user input, and the wrapper that turns it into exit code 2.

    from tools.errors import UserError, run_cli
    raise UserError("unknown model 'resnet19'; choose one of: resnet18, resnet20, ...")

Scripts call `run_cli(main)`: a UserError prints one line `error: ...` on stderr and exits
with status 2, never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """Bad input from the user: a config, a flag, a path, a checkpoint. The message is one
    line that names the bad thing and how to fix it."""


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
