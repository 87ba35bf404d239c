"""Fetch and convert the paper-scale data (needs the Hugging Face hub; run it once on the GPU workstation).

    python -m dgpo_lib.data.paper --out data/paper

- the Search-R1 training mix (NQ train + HotpotQA train) and the seven test sets from FlashRAG's datasets
  (`RUC-NLPIR/FlashRAG_datasets`; test split, else dev, as Search-R1's `qa_search_test_merge.py`), written in
  the FlashRAG schema this project reads;
- the wiki-18 corpus (`PeterJinGo/wiki-18-corpus`, `wiki-18.jsonl.gz`, ~21M passages, ~14 GB unpacked).

Nothing in the project calls this implicitly: the `paper` preset expects its output under `data/paper`.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path
from typing import Iterable

from dgpo_lib.io_utils import atomic_path, atomic_write_jsonl

TEST_SETS = {"nq": "nq", "triviaqa": "triviaqa", "popqa": "popqa", "hotpotqa": "hotpotqa",
             "2wiki": "2wikimultihopqa", "musique": "musique", "bamboogle": "bamboogle"}
TRAIN_SETS = ("nq", "hotpotqa")


def flashrag_rows(rows: Iterable[dict], source: str) -> list[dict]:
    """FlashRAG rows -> this project's schema (id, question, golden_answers as a list of strings, metadata)."""
    out = []
    for i, r in enumerate(rows):
        ans = r.get("golden_answers")
        if isinstance(ans, str):
            ans = [ans]
        if not r.get("question") or not ans:
            raise ValueError(f"{source} row {i}: missing question or golden_answers")
        out.append({"id": str(r.get("id", i)), "question": r["question"], "golden_answers": [str(a) for a in ans],
                    "metadata": {"source": source}})
    return out


def _split(name: str, prefer: tuple[str, ...]):
    from datasets import load_dataset

    ds = load_dataset("RUC-NLPIR/FlashRAG_datasets", name)
    for split in prefer:
        if split in ds:
            return ds[split], split
    raise KeyError(f"FlashRAG {name}: none of the splits {prefer}")


def fetch(out: Path, with_corpus: bool = True) -> None:
    out = Path(out)
    for ours, theirs in TEST_SETS.items():
        rows, split = _split(theirs, ("test", "dev", "train"))
        atomic_write_jsonl(out / "qa" / f"{ours}.jsonl", flashrag_rows(rows, f"FlashRAG {theirs} {split}"))
    train = []
    for name in TRAIN_SETS:
        rows, split = _split(name, ("train",))
        train += flashrag_rows(rows, f"FlashRAG {name} {split}")
    atomic_write_jsonl(out / "qa" / "nq_hotpotqa_train.jsonl", train)
    if with_corpus:
        from huggingface_hub import hf_hub_download

        gz = hf_hub_download("PeterJinGo/wiki-18-corpus", "wiki-18.jsonl.gz", repo_type="dataset")
        with gzip.open(gz, "rb") as src, atomic_path(out / "corpus" / "wiki-18.jsonl", "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 24)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/paper")
    ap.add_argument("--no-corpus", action="store_true", help="only the question sets")
    a = ap.parse_args(argv)
    fetch(Path(a.out), not a.no_corpus)


if __name__ == "__main__":
    main()
