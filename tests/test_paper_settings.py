"""The paper-scale page's settings table (value and source per setting) agrees with the paper preset."""
import re
from pathlib import Path

import yaml

from dgpo_lib.config import load_config

PAGE = Path(__file__).resolve().parents[1] / "book" / "paper_scale.md"


def _rows():
    rows = re.findall(r"^\| `([\w.]+)` \| `([^`]*)`[^|]* \| ([^|]+) \|$", PAGE.read_text(), re.M)
    assert len(rows) > 40, "the settings table was not found"
    return rows


def test_every_row_matches_the_preset_and_names_a_source():
    cfg = load_config("paper")
    for key, shown, source in _rows():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        assert value == yaml.safe_load(shown), f"{key}: the page says {shown}, the preset has {value!r}"
        assert source.strip(), f"{key} has no source"
