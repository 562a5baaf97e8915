"""Argument parsing shared by every script: --config, --set, --device, --save-dir.

>>> parser = base_parser("A script's docstring: its first paragraph becomes the description.")
>>> _ = parser.add_argument("--epochs", type=int)
>>> args = parser.parse_args(["--config", "cfgs/quickstart.yaml", "--epochs", "2"])
>>> resolve_config(args, flags={"train.epochs": args.epochs}).train.epochs   # flags win over the YAML
2
>>> parse_list("1,32,256", int, "--batch-sizes", "1,32")
[1, 32, 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.core.config import Config, load_config
from tools.core.errors import UserError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit 2 in one line (`... error: ...; see --help`)."""

    def error(self, message: str) -> None:  # argparse's own errors also exit 2, in one line
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def base_parser(doc: str | None, config_required: bool = False) -> argparse.ArgumentParser:
    parser = Parser(description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=config_required, help="YAML config in cfgs/ (or a run's config.yaml)")
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set train.epochs=3 model.name=resnet20",
    )
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (overrides train.device)")
    parser.add_argument("--save-dir", help="run folder to write into (default: results/<script>/<config name>)")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        default=None,
        help="unpickle checkpoints that need it, which can run code from the file (model.trust_checkpoint)",
    )
    return parser


def resolve_config(args: argparse.Namespace, flags: dict | None = None, base: tuple[dict, str] | None = None) -> Config:
    """defaults < `base` (e.g. a checkpoint's config) < --config < --set < script flags."""
    flags = dict(flags or {})
    flags.setdefault("train.device", args.device)
    flags.setdefault("model.trust_checkpoint", getattr(args, "trust_checkpoint", None))
    return load_config(args.config, overrides=args.set, flags=flags, base=base)


def run_name(cfg: Config, config_path: str | None, fallback: str) -> str:
    if cfg.output.name:
        return cfg.output.name
    return Path(config_path).stem if config_path else fallback


def parse_list(text: str | None, cast, flag: str, example: str) -> list | None:
    """A comma- (or space-) separated command-line list; None when the flag was not given."""
    if text is None:
        return None
    try:
        values = [cast(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise UserError(f"{flag} must be a comma-separated list like {example}, got {text!r}") from None
    if not values:
        raise UserError(f"{flag} is empty; give at least one value, e.g. {example}")
    return values


def parse_batch_sizes(text: str | None) -> list[int] | None:
    sizes = parse_list(text, int, "--batch-sizes", "1,32,256")
    if sizes is not None and min(sizes) < 1:
        raise UserError(f"--batch-sizes must be positive integers like 1,32,256, got {text!r}")
    return sizes
