"""The preflight check: each missing piece, simulated with tiny stand-ins and a faked machine, gives its message,
its fix and exit status 1; a complete set-up gives 0."""
import json
from pathlib import Path

import pytest

from dgpo_lib.pipeline import preflight as P
from dgpo_lib.config import load_config
from dgpo_lib.models.loading import build_tiny_model

GIB = 2 ** 30


def fake_machine(gpus=(("NVIDIA H100 80GB HBM3", 80 * GIB),) * 8, disk=10_000 * GIB, memory=2_000 * GIB,
                 cached=None, hub=False):
    packages = {"torch": "2.13.0", "transformers": "5.23.0", "accelerate": "1.15.0", "vllm": None}
    return P.Machine(list(gpus), memory, disk, hub, cached or (lambda repo: None), packages)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """A paper-preset layout in miniature: question files, a corpus, a matching index and tiny model folders."""
    root = tmp_path_factory.mktemp("paper")
    data = root / "data"
    (data / "qa").mkdir(parents=True)
    for name in ["nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle", "nq_hotpotqa_train"]:
        (data / "qa" / f"{name}.jsonl").write_text(json.dumps({"id": "1", "question": "q?", "golden_answers": ["a"]}) + "\n")
    (data / "corpus").mkdir()
    (data / "corpus" / "wiki-18.jsonl").write_text(json.dumps({"id": "0", "contents": "\"T\"\ntext"}) + "\n")
    models = {r: build_tiny_model(root / f"tiny-{r}", 64, 2, 0) for r in ("teacher", "student")}
    return root, data, models


def paper_cfg(root, data, models, **extra):
    over = {"data.data_dir": str(data), "run_root": str(root / "runs"), "models.teacher": str(models["teacher"]),
            "models.student": str(models["student"]), "retrieval.encoder": str(models["student"]), **extra}
    return load_config("paper", [f"{k}={v}" for k, v in over.items()])


def write_index(cfg, encoder: str):
    d = Path(cfg.run_root) / f"index-abc-{cfg.hash('retrieval')}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").write_text(json.dumps({"n_passages": 1, "encoder": encoder, "index_type": "flat"}))


def statuses(cfg, machine):
    checks, _ = P.run_checks(cfg, machine)
    return {(c.area, c.item): c for c in checks}


def test_complete_setup_passes(standins):
    root, data, models = standins
    cfg = paper_cfg(root, data, models)
    write_index(cfg, cfg.retrieval.encoder)
    checks, times = P.run_checks(cfg, fake_machine())
    assert [c for c in checks if c.status in (P.MISSING, P.SMALL)] == []
    assert P.main(["--preset", "paper"] + [f"{k}={v}" for k, v in {
        "data.data_dir": data, "run_root": root / "runs", "models.teacher": models["teacher"],
        "models.student": models["student"], "retrieval.encoder": models["student"]}.items()],
        machine=fake_machine()) == 0
    assert any("h on 8 x NVIDIA H100" in t for _, t in times)


def test_model_not_cached_and_hub_unreachable(standins, capsys):
    root, data, _ = standins
    cfg = load_config("paper", [f"data.data_dir={data}", f"run_root={root / 'runs'}"])
    s = statuses(cfg, fake_machine(hub=False))
    teacher = s[("models", "teacher")]
    assert teacher.status == P.MISSING and "unreachable" in teacher.detail and "3.09B" in teacher.detail
    assert "huggingface-cli download omron-sinicx/SearchR1-ppo-qwen2.5-3b-instruct" in teacher.fix
    assert P.main(["--preset", "paper", f"data.data_dir={data}", f"run_root={root / 'runs'}"],
                  machine=fake_machine()) == 1
    assert "problem(s): models teacher" in capsys.readouterr().out
    # cached, or reachable: ok
    assert statuses(cfg, fake_machine(hub=True))[("models", "teacher")].status == P.OK
    snap = standins[2]["teacher"]
    assert statuses(cfg, fake_machine(cached=lambda repo: snap))[("models", "student")].status == P.OK


def test_cold_start_checkpoint_is_checked(standins):
    root, data, models = standins
    cfg = paper_cfg(root, data, models, **{"rl.cold_start": "omron-sinicx/Qwen2.5-0.5B-Instruct-kd"})
    c = statuses(cfg, fake_machine())[("models", "cold start (rl.cold_start)")]
    assert c.status == P.MISSING and "Qwen2.5-0.5B-Instruct-kd" in c.fix


def test_corpus_and_question_sets_absent(standins, tmp_path):
    root, _, models = standins
    cfg = paper_cfg(root, tmp_path / "nothing", models)
    s = statuses(cfg, fake_machine())
    assert s[("data", "corpus")].status == P.MISSING and s[("data", "corpus")].fix == P.FETCH_DATA
    q = s[("data", "question sets")]
    assert q.status == P.MISSING and "nq_hotpotqa_train" in q.detail and q.fix == P.FETCH_DATA


def test_index_for_another_encoder_is_named(standins, tmp_path):
    root, data, models = standins
    cfg = paper_cfg(root, data, models, run_root=str(tmp_path / "runs"))
    other = Path(cfg.run_root) / "index-abc-0123456789ab"
    other.mkdir(parents=True)
    (other / "meta.json").write_text(json.dumps({"n_passages": 5, "encoder": "minilm", "index_type": "flat"}))
    c = statuses(cfg, fake_machine())[("data", "index")]
    assert c.status == P.BUILD and "built for encoder 'minilm'" in c.detail
    assert c.fix.startswith("python -m dgpo_lib.pipeline.run_stage index --preset paper")
    write_index(cfg, cfg.retrieval.encoder)
    assert statuses(cfg, fake_machine())[("data", "index")].status == P.OK


def test_prebuilt_index_path_must_exist(standins, tmp_path):
    root, data, models = standins
    cfg = paper_cfg(root, data, models, **{"retrieval.index_path": str(tmp_path / "e5_Flat.index")})
    c = statuses(cfg, fake_machine())[("data", "index")]
    assert c.status == P.MISSING and "e5_Flat.index" in c.fix


def test_too_little_disk_or_gpu_memory(standins):
    root, data, models = standins
    cfg = load_config("paper", [f"data.data_dir={data}", f"run_root={root / 'runs'}"])
    s = statuses(cfg, fake_machine(disk=20 * GIB, gpus=[("NVIDIA A10", 24 * GIB)] * 8, hub=True))
    assert s[("hardware", "free disk")].status == P.SMALL and "run_root=" in s[("hardware", "free disk")].fix
    gpu = s[("hardware", "GPU memory")]
    assert gpu.status == P.SMALL and "24 GiB each" in gpu.detail and "FSDP" in gpu.fix
    assert statuses(cfg, fake_machine(hub=True))[("hardware", "GPU memory")].status == P.OK


def test_no_gpu_and_small_host_memory_for_the_exact_index(standins, tmp_path):
    root, data, models = standins
    cfg = load_config("paper", [f"data.data_dir={data}", f"run_root={root / 'runs'}"])
    s = statuses(cfg, fake_machine(gpus=[], memory=24 * GIB, hub=True))
    assert s[("hardware", "GPU")].status == P.MISSING
    assert s[("software", "CUDA torch")].status == P.MISSING
    assert s[("hardware", "host memory for the index")].status == P.OK  # the stand-in corpus has 1 passage
    # before the corpus is fetched, wiki-18's 21M passages size the exact index: ~60 GiB of e5 vectors
    cfg = load_config("paper", [f"data.data_dir={tmp_path}", f"run_root={root / 'runs'}"])
    idx = statuses(cfg, fake_machine(gpus=[], memory=24 * GIB, hub=True))[("hardware", "host memory for the index")]
    assert idx.status == P.SMALL and "21,015,324 passages" in idx.detail and "ivfpq" in idx.fix


def test_missing_hub_model_at_run_time_names_the_fix(monkeypatch):
    from dgpo_lib.models import loading as models
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct"):
        models.load_model("Qwen/Qwen2.5-0.5B-Instruct")


def test_cpu_preset_report_on_this_machine_names_every_area():
    checks, _ = P.run_checks(load_config("cpu"), P.Machine.probe(Path("runs")))
    assert {c.area for c in checks} == {"models", "data", "hardware", "software"}


def test_transformers_older_than_the_pin_stops_the_continuous_generator():
    cfg = load_config("cpu")
    machine = fake_machine()
    machine.packages = {**machine.packages, "transformers": "5.17.0"}
    tf = next(c for c in P.software_checks(cfg, machine) if c.item == "transformers")
    assert tf.status == P.MISSING and "older than the pinned 5.23.0" in tf.detail and "rollout.generator=hf" in tf.fix
    cfg.rollout.generator = "hf"
    assert next(c for c in P.software_checks(cfg, machine) if c.item == "transformers").status == P.OK
    assert next(c for c in P.software_checks(load_config("cpu"), fake_machine()) if c.item == "transformers").status == P.OK


def test_a_wrong_data_override_is_told_to_fix_the_override():
    """A corpus or question set that an override names and that is not there: the fix is the override, not a
    checkout of the committed data folder."""
    from dgpo_lib.config import load_config
    checks = {c.item: c for c in P.data_checks(load_config("smoke", ["data.corpus=corpus/nope.jsonl.gz",
                                                                      "data.eval_sets=[nq, no_such_set]"]))}
    assert checks["corpus"].status == P.MISSING and "data.corpus override" in checks["corpus"].fix
    assert "no_such_set" in checks["question sets"].detail and "override" in checks["question sets"].fix
    assert "git checkout" not in checks["corpus"].fix + checks["question sets"].fix


@pytest.mark.parametrize("damage, words", [
    (lambda raw: raw[:len(raw) // 2], "truncated (the gzip stream ends early)"),
    (lambda raw: b'{"id": "0", "contents": "T\\ntext"}\n', "not a readable gzip file"),
    (lambda raw: __import__("gzip").compress(b'{"id": "0"}\n'), "field 'contents'"),
])
def test_a_corpus_that_does_not_read_is_named_with_its_key(tmp_path, damage, words):
    """Preflight reads the data files as the run will (gzip, JSON, fields): a broken corpus is `broken`, naming
    the file and the key, and the index over it is not reported ok."""
    good = P.REPO_ROOT / "data" / "corpus" / "cpu_corpus.jsonl.gz"
    bad = tmp_path / "corpus.jsonl.gz"
    bad.write_bytes(damage(good.read_bytes()))
    cfg = load_config("smoke", [f"data.corpus={bad}", f"run_root={tmp_path / 'runs'}"])
    checks = {c.item: c for c in P.data_checks(cfg)}
    c = checks["corpus"]
    assert c.status == P.BROKEN and str(bad) in c.detail and "data.corpus" in c.detail and words in c.detail
    assert checks["index"].status == P.INFO and "not checked" in checks["index"].detail
    assert P.main(["--preset", "smoke", f"data.corpus={bad}", f"run_root={tmp_path / 'runs'}"]) == 1


def test_a_question_set_with_broken_json_is_named(tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(P.REPO_ROOT / "data", data)
    (data / "qa" / "nq_ctx_extra.jsonl").write_text('{"id": "1", "question": "q?", "golden_answers": ["a"]}\n{"id": 2\n')
    checks = {c.item: c for c in P.data_checks(load_config("smoke", [f"data.data_dir={data}"]))}
    c = checks["question set nq_ctx_extra"]
    assert c.status == P.BROKEN and "nq_ctx_extra.jsonl" in c.detail and "data.train_sets" in c.detail
    assert "line 2" in c.detail and "broken JSON" in c.detail


def test_the_run_names_a_truncated_gzip_file(tmp_path):
    from dgpo_lib.data.loaders import DataError, load_corpus
    bad = tmp_path / "c.jsonl.gz"
    bad.write_bytes((P.REPO_ROOT / "data" / "corpus" / "cpu_corpus.jsonl.gz").read_bytes()[:50_000])
    with pytest.raises(DataError, match=r"c\.jsonl\.gz: truncated .* after line \d+"):
        load_corpus(bad)
