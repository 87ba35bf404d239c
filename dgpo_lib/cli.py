"""What every command of the project parses the same way: its module docstring in full as `--help` (examples
kept as written), `--preset`, and `key=value` config overrides anywhere on the line."""
from __future__ import annotations

import argparse

from dgpo_lib.config import PRESETS


def parser(doc: str, preset_default: str = "cpu") -> argparse.ArgumentParser:
    """A command's parser with `--preset`; add the command's own arguments, then call `parse`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=preset_default,
                    help=f"one of {', '.join(PRESETS)}, or a .yaml path (default {preset_default})")
    return ap


def parse(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse with the `overrides` positional last, options and overrides in any order."""
    ap.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. rl.beta=0.01 (an unknown key "
                                                 "is an error naming it)")
    return ap.parse_intermixed_args(argv)
