"""Shared fixtures: the smoke config, a tiny random model, the smoke corpus and its dense retriever."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share two cores: one thread each, subprocesses included
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)

# The files that take longest (minutes), started first so that neither worker is left with one at the end.
LONGEST_FIRST = ("test_notebooks_and_book.py", "test_committed_book.py", "test_paper_scale.py", "test_accelerate.py",
                 "test_reliability.py", "test_validation_curves.py", "test_stage_reads.py", "test_device_check.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


@pytest.fixture(scope="session")
def smoke_cfg():
    from dgpo_lib.config import load_config
    return load_config("smoke")


@pytest.fixture(scope="session")
def tiny(smoke_cfg):
    """(model, tokenizer) of the tiny random student."""
    from dgpo_lib.models.loading import load_role
    return load_role(smoke_cfg, "student")


@pytest.fixture(scope="session")
def tiny_teacher(smoke_cfg):
    from dgpo_lib.models.loading import load_role
    return load_role(smoke_cfg, "teacher")


@pytest.fixture(scope="session")
def corpus(smoke_cfg):
    from dgpo_lib.data.loaders import load_cfg_corpus
    return load_cfg_corpus(smoke_cfg)


@pytest.fixture(scope="session")
def dense(smoke_cfg, corpus, tmp_path_factory):
    from dgpo_lib.env.retrieval import build_retriever
    return build_retriever(smoke_cfg, corpus, tmp_path_factory.mktemp("index"), progress=False)


class ScriptedGenerator:
    """Stands in for the model: returns the next scripted turn of each context's question, as token ids.
    Contexts are matched by the question text they contain."""

    def __init__(self, tokenizer, scripts: dict[str, list[str]]):
        self.tok, self.scripts, self.calls = tokenizer, scripts, []
        self.turn = {q: 0 for q in scripts}

    def generate(self, contexts, max_new_tokens, temperature=0.0, top_p=1.0):
        self.calls.append(len(contexts))
        out = []
        for ctx in contexts:
            text = self.tok.decode(ctx)
            q = next(q for q in self.scripts if q in text)
            turns = self.scripts[q]
            t = turns[min(self.turn[q], len(turns) - 1)]
            self.turn[q] += 1
            out.append(self.tok(t, add_special_tokens=False).input_ids[:max_new_tokens])
        return out


@pytest.fixture
def scripted():
    return ScriptedGenerator


@pytest.fixture
def free_port() -> str:
    """A free loopback port for `accelerate launch --main_process_port`: two test files may launch at once."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])
