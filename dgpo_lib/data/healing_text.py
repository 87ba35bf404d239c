"""The plain text a pruned student is built from: the corpus passages that healing trains on and holds out, and the
calibration passages on which the greedy layer choice scores each removal.

Every one is a corpus passage that is no evaluation question's gold passage (the student must not read the test
answers), and the order is a function of the seed alone, so the same config always picks the same passages.
"""
from __future__ import annotations

import random

from dgpo_lib.data import loaders as D


def healing_split(cfg) -> tuple[list[str], list[str], set[str]]:
    """(training passages, held-out passages, excluded ids): the corpus minus the gold passages of every
    evaluation question, shuffled with the seed; the first `models.heal_held_out` are held out to report the
    healing's text loss, the rest are what healing trains on."""
    gold = {i for rows in D.load_eval_sets(cfg).values() for q in rows for i in q.metadata.get("supporting_ids") or []}
    texts = [p.contents for p in D.load_cfg_corpus(cfg) if p.id not in gold]
    random.Random(f"{cfg.seed}:heal-split").shuffle(texts)
    n = cfg.models.heal_held_out
    return texts[n:], texts[:n], gold


def layer_calibration_texts(cfg) -> list[str]:
    """The first `models.layer_calib_passages` of healing's training passages: disjoint from the held-out passages
    on which the healing reports its loss, so that loss is never measured on text that chose the layers."""
    return healing_split(cfg)[0][: cfg.models.layer_calib_passages]
