"""Which config keys a piece of code reads: every attribute read of a config section, recorded while it runs.

Reads made to hash or serialise the whole config (`Config.to_dict`, `Config.hash`: provenance, cache keys) are not
counted: they are bookkeeping, not what the stage computes with."""
from __future__ import annotations

import contextlib
import dataclasses

from dgpo_lib.config import Config

# Keys that place or schedule a run without entering any result: where it lives, how many threads, which rows the
# results table lists (each row's stage has its own key).
RUN_LEVEL = {"preset", "run_root", "threads", "eval.methods", "eval.ablations"}


def leaf_keys(cfg: Config) -> set[str]:
    """Every leaf key of the config as `section.key` (top-level ones bare)."""
    out = set()
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out |= {f"{f.name}.{g.name}" for g in dataclasses.fields(v)}
        else:
            out.add(f.name)
    return out


@contextlib.contextmanager
def recording(cfg: Config):
    """`with recording(cfg) as reads:` collects `section.key` for every config field read inside the block (by any
    copy of the config's sections: the classes are patched, not the instances)."""
    reads: set[str] = set()
    section_of = {type(getattr(cfg, f.name)): f.name for f in dataclasses.fields(cfg)
                  if dataclasses.is_dataclass(getattr(cfg, f.name))}
    paused = [0]
    patched = []

    def patch(cls, prefix):
        names = {f.name for f in dataclasses.fields(cls)}
        original = cls.__getattribute__

        def getattribute(self, name):
            value = original(self, name)
            if not paused[0] and name in names and not dataclasses.is_dataclass(value):
                reads.add(f"{prefix}{name}")
            return value
        cls.__getattribute__ = getattribute
        patched.append((cls, "__getattribute__", original))

    def pause(cls, method):
        original = getattr(cls, method)

        def paused_method(self, *a, **kw):
            paused[0] += 1
            try:
                return original(self, *a, **kw)
            finally:
                paused[0] -= 1
        setattr(cls, method, paused_method)
        patched.append((cls, method, original))

    patch(Config, "")
    for cls, name in section_of.items():
        patch(cls, f"{name}.")
    pause(Config, "to_dict")
    pause(Config, "hash")
    try:
        yield reads
    finally:
        for cls, attr, original in reversed(patched):
            setattr(cls, attr, original)
