"""The `paper` preset's code paths with tiny local stand-ins: tiny Qwen2 folders in place of the hub models, a
local encoder folder in place of e5 (same query:/passage: prefixes), a ~1k-passage corpus in place of wiki-18,
an IVF index (built, reloaded, served), the chat template, and `accelerate launch` with 2 CPU processes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dgpo_lib.data.loaders import REPO_ROOT, load_cfg_corpus, load_qa, qa_path
from dgpo_lib.io_utils import atomic_write_jsonl
from dgpo_lib.data.paper import flashrag_rows


def _rows(qs):
    return [{"id": q.id, "question": q.question, "golden_answers": q.golden_answers, "metadata": q.metadata}
            for q in qs]


@pytest.fixture(scope="module")
def standins(tmp_path_factory, smoke_cfg):
    from dgpo_lib.models.loading import build_tiny_model
    from dgpo_lib.env.retrieval import resolve_encoder
    root = tmp_path_factory.mktemp("paper")
    data = root / "data"
    train = load_qa(qa_path("data", "hotpotqa_train"))[:12]
    atomic_write_jsonl(data / "qa" / "nq_hotpotqa_train.jsonl", _rows(train))
    for name in ("nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle"):
        atomic_write_jsonl(data / "qa" / f"{name}.jsonl", _rows(load_qa(qa_path("data", name))[:3]))
    passages = load_cfg_corpus(smoke_cfg)
    gold = {i for q in train for i in q.metadata["supporting_ids"]}
    from dgpo_lib.data.loaders import load_corpus
    extra = [p for p in load_corpus(REPO_ROOT / "data/corpus/cpu_corpus.jsonl.gz") if p.id in gold]
    corpus = {p.id: p for p in passages + extra}
    atomic_write_jsonl(data / "corpus" / "wiki-18.jsonl", [{"id": p.id, "contents": p.contents}
                                                           for p in list(corpus.values())[:1000]])
    teacher = build_tiny_model(root / "Qwen2.5-3B-standin", 128, 4, seed=1)
    student = build_tiny_model(root / "Qwen2.5-0.5B-standin", 64, 2, seed=2)
    encoder = root / "e5-standin"
    shutil.copytree(resolve_encoder("minilm"), encoder)
    return [f"data.data_dir={data}", f"models.teacher={teacher}", f"models.student={student}",
            f"retrieval.encoder={encoder}", "retrieval.index_type=ivf", "retrieval.nlist=8", "retrieval.nprobe=8",
            "retrieval.encode_batch=64", "retrieval.max_length=128", "models.compute_dtype=float32",
            "retrieval.encoder_dtype=float32",  # the preset's float16 encoder is a GPU setting
            "teacher.source=make", "teacher.sft_epochs=60", "teacher.sft_lr=3e-3", "teacher.sft_batch=4",
            "rollout.max_turn_tokens=64", "rollout.max_obs_tokens=160", "rollout.max_total_tokens=1500",
            "rollout.batch_size=8", "kd.steps=2", "kd.batch_size=4", "kd.lr=1e-3", "rl.steps=2",
            "rl.prompts_per_step=4", "rl.mini_batch=4", "rl.actor_lr=1e-4", "train.micro_batch=4",
            "train.save_every=1", "eval.batch_size=8", f"run_root={root / 'runs'}"]


def test_paper_config_loads_with_standins(standins):
    from dgpo_lib.config import load_config
    cfg = load_config("paper", standins)
    assert cfg.retrieval.query_prefix == "query: " and cfg.models.chat_template and cfg.rollout.max_turns == 4
    assert cfg.rl.beta == 0.001 and cfg.rl.prompts_per_step == 4


def test_paper_path_index_ivf_reload_server_and_eval(standins):
    from dgpo_lib.config import load_config
    from dgpo_lib.pipeline import Run
    from dgpo_lib.env.retrieval import DenseRetriever
    from dgpo_lib.env.retrieval import RemoteRetriever
    from dgpo_lib.env.retrieval_server import serve
    cfg = load_config("paper", standins)
    run = Run(cfg, progress=False)
    r = run.resources.retriever()
    assert r.meta["index_type"] == "ivf" and r.encoder.query_prefix == "query: "
    again = DenseRetriever.load(r.passages, r.encoder, next(Path(cfg.run_root).glob("index-*")))
    qs = [p.title for p in r.passages[:10]]
    assert [[p.id for p in x] for x in again.search(qs, 3)] == [[p.id for p in x] for x in r.search(qs, 3)]
    srv = serve(r, port=0)
    try:
        remote = RemoteRetriever(f"http://127.0.0.1:{srv.server_address[1]}")
        assert [[p.id for p in x] for x in remote.search(qs, 3)] == [[p.id for p in x] for x in r.search(qs, 3)]
        # the rollout environment can talk to the server instead of the in-process index
        run.resources._retriever = remote
        summary = run.evaluate("student")
    finally:
        srv.shutdown()
    assert set(summary["per_set"]) == set(cfg.data.eval_sets)
    prompt = (run.stage_dir("eval_student") / "records_nq.jsonl").read_text()
    assert json.loads(prompt.splitlines()[0])["finish"] in ("answer", "eos", "max_turns", "length")


def test_paper_path_dgpo_under_accelerate_two_processes(standins, free_port):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    stage = [sys.executable, "-m", "dgpo_lib.pipeline.run_stage"]
    r = subprocess.run([*stage, "kd_kd", "--preset", "paper", "--quiet", *standins], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    accel = Path(sys.executable).with_name("accelerate")
    r = subprocess.run([str(accel), "launch", "--config_file", str(REPO_ROOT / "configs/accelerate/cpu_2proc.yaml"),
                        "--main_process_port", free_port,
                        "-m", "dgpo_lib.pipeline.run_stage", "rl_dgpo", "--preset", "paper", "--quiet", *standins],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    root = Path([s for s in standins if s.startswith("run_root=")][0].split("=", 1)[1])
    [m] = root.glob("paper-*/rl_dgpo/metrics.jsonl")
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2] and all("kl_teacher" in x for x in rows)


def test_flashrag_conversion():
    rows = flashrag_rows([{"id": "test_0", "question": "who?", "golden_answers": ["me", "I"]},
                          {"question": "what?", "golden_answers": "it"}], "FlashRAG nq test")
    assert rows[0]["golden_answers"] == ["me", "I"] and rows[1] == {
        "id": "1", "question": "what?", "golden_answers": ["it"], "metadata": {"source": "FlashRAG nq test"}}
    with pytest.raises(ValueError, match="row 0"):
        flashrag_rows([{"question": "", "golden_answers": ["x"]}], "src")
