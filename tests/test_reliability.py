"""Bad input, broken model outputs, interruption (SIGKILL) and repeatability."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dgpo_lib.data.loaders import REPO_ROOT, QAExample
from dgpo_lib.io_utils import atomic_write_json, read_jsonl_tolerant
from dgpo_lib.env.reward import exact_match, normalize_answer
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv, clean_query, parse_action

TAGGY = st.lists(st.sampled_from(list("ab <>/\n") + ["<search>", "</search>", "<answer>", "</answer>", "<think>",
                                                      "</information>", "Paris"]), max_size=30).map("".join)


@given(TAGGY)
@settings(max_examples=300, deadline=None)
def test_parser_never_crashes_on_random_text(text):
    kind, content = parse_action(text)
    assert kind in (None, "search", "answer")
    assert len(clean_query(content)) <= 512 and "<search>" not in clean_query(content)
    em = exact_match(content if kind == "answer" else None, ["Paris"])
    assert em in (0.0, 1.0)
    if em == 1.0:
        # EM compares normalised text (Search-R1: lower case, no punctuation, articles or extra spaces)
        assert normalize_answer(content) == "paris"


@given(st.lists(TAGGY | st.text(max_size=40), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_model_outputs_never_crash_a_rollout(tiny, dense, scripted, turns):
    _, tok = tiny
    q = QAExample("0", "random output question", ["Paris"], "t")
    env = SearchEnv(scripted(tok, {q.question: turns}), dense, tok,
                    RolloutSettings(max_turns=2, max_turn_tokens=64, max_obs_tokens=50, max_total_tokens=1500))
    [t] = env.run([q])
    assert t.finish in ("answer", "eos", "max_turns", "length")
    assert t.n_searches <= 2 and len(t.action_mask) == len(t.response_ids)
    assert t.em == (1.0 if t.answer is not None and t.answer.strip().lower() == "paris" else 0.0)


def test_ten_thousand_character_query_is_cut(tiny, dense, scripted):
    _, tok = tiny
    q = QAExample("0", "long query question", ["Paris"], "t")
    env = SearchEnv(scripted(tok, {q.question: ["<search> " + "x " * 5000 + "</search>", "<answer>Paris</answer>"]}),
                    dense, tok, RolloutSettings(max_turns=2, max_turn_tokens=20000, max_total_tokens=30000))
    [t] = env.run([q])
    assert t.n_searches == 1 and len(t.queries[0]) <= 512 and t.em == 1.0


def test_missing_model_path_is_a_clear_error():
    from dgpo_lib.models.loading import load_model
    with pytest.raises(FileNotFoundError, match="/no/such/model"):
        load_model("/no/such/model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("./relative/missing")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"a": object.__new__(type("X", (), {"__str__": None}))})
    assert json.loads(p.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [p]
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{"step": 2, "lo')  # torn last line of a killed run
    assert read_jsonl_tolerant(tmp_path / "m.jsonl") == [{"step": 1}]


def test_two_writers_of_one_folder_keep_their_own_temp_folders(tmp_path):
    """Interleaved writers of the same folder: neither deletes the other's half-written files; the last to finish
    leaves a complete folder, and no temp folder is left behind (nor after a failed write)."""
    from dgpo_lib.io_utils import atomic_dir

    out = tmp_path / "model"
    with atomic_dir(out) as a:
        (a / "w.bin").write_text("a")
        with atomic_dir(out) as b:
            (b / "w.bin").write_text("b")
        assert (a / "w.bin").read_text() == "a" and (out / "w.bin").read_text() == "b"
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "w.bin").read_text() == "a" and out.stat().st_mode & 0o777 == 0o777 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as c:
            (c / "w.bin").write_text("half")
            raise RuntimeError("killed mid-write")
    assert [x.name for x in tmp_path.iterdir()] == ["model"] and (out / "w.bin").read_text() == "a"
    # a writer killed outright leaves its temp folder; the next writer removes it (its process is gone), not a
    # live writer's
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f"model.tmp-{dead.stdout.strip()}-abc").mkdir()
    (tmp_path / f"model.tmp-{os.getpid()}-live").mkdir()
    with atomic_dir(out) as d:
        (d / "w.bin").write_text("d")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model", f"model.tmp-{os.getpid()}-live"]


def test_two_processes_building_one_cache_folder_take_turns(tmp_path):
    """Parallel test workers (or two runs sharing `cache/`) may both need a model folder that is not built yet:
    one builds it, the other waits and loads it, and neither sees the other's half-written folder."""
    code = ("import sys; from pathlib import Path; from dgpo_lib.models.loading import build_tiny_model; "
            "from transformers import AutoModelForCausalLM; out = build_tiny_model(Path(sys.argv[1]), layers=1); "
            "print(AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "tiny")], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["1", "1"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["tiny", "tiny.lock"]  # no temp folder left behind


def _stage(args, root, **kw):
    cmd = [sys.executable, "-m", "dgpo_lib.pipeline.run_stage", *args, "--preset", "smoke", "--quiet", f"run_root={root}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _kill_when(proc, paths_fn, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError("finished before it could be killed: " + proc.stderr.read().decode()[-2000:])
        if paths_fn():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("condition never met")


def _finish(args, root):
    p = _stage(args, root)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def _rows(root):
    [f] = Path(root).glob("smoke-*/kd_kd/metrics.jsonl")
    return [{k: v for k, v in r.items() if k != "step_s"} for r in read_jsonl_tolerant(f)]


def test_sigkill_during_training_then_resume_gives_same_result(tmp_path):
    args = ["kd_kd", "kd.steps=25", "train.save_every=1"]
    a = tmp_path / "a"
    _finish(args, a)
    b = tmp_path / "b"
    proc = _stage(args, b)
    _kill_when(proc, lambda: any(Path(b).glob("smoke-*/kd_kd/ckpt/step_3/state.json")))
    assert not any(Path(b).glob("smoke-*/kd_kd/done.json"))
    _finish(args, b)
    assert _rows(a) == _rows(b) and len(_rows(a)) == 25
    import safetensors.torch as st_
    [wa] = Path(a).glob("smoke-*/kd_kd/model/model.safetensors")
    [wb] = Path(b).glob("smoke-*/kd_kd/model/model.safetensors")
    ta, tb = st_.load_file(str(wa)), st_.load_file(str(wb))
    assert all((ta[k] == tb[k]).all() for k in ta)


def test_sigkill_during_index_build_then_resume(tmp_path, smoke_cfg):
    args = ["index", "retrieval.encode_chunk=16"]
    proc = _stage(args, tmp_path)
    _kill_when(proc, lambda: len(list(Path(tmp_path).glob("index-*/chunks-*/emb_*.npy"))) >= 3)
    assert not any(Path(tmp_path).glob("index-*/meta.json"))
    n_before = len(list(Path(tmp_path).glob("index-*/chunks-*/emb_*.npy")))
    _finish(args, tmp_path)
    import copy
    from dgpo_lib.pipeline import Run
    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root, cfg.retrieval.encode_chunk = str(tmp_path), 16
    resumed = Run(cfg, progress=False).resources.retriever()
    cfg2 = copy.deepcopy(cfg)
    cfg2.run_root = str(tmp_path / "fresh")
    fresh = Run(cfg2, progress=False).resources.retriever()
    qs = [p.title for p in resumed.passages[:40]]
    assert [[p.id for p in r] for r in resumed.search(qs, 3)] == [[p.id for p in r] for r in fresh.search(qs, 3)]
    assert n_before >= 3


def test_results_files_carry_provenance_and_runs_repeat(tmp_path, smoke_cfg):
    import copy
    from dgpo_lib.pipeline import Run
    outs = []
    for name in ("x", "y"):
        cfg = copy.deepcopy(smoke_cfg)
        cfg.run_root = str(tmp_path / name)
        run = Run(cfg, progress=False)
        res = run.results(["student", "kd"])
        outs.append((res["em"], [{k: v for k, v in r.items() if k != "step_s"} for r in run.metrics("kd_kd")]))
        prov = res["provenance"]
        for key in ("seed", "preset", "config_hash", "versions", "git_commit"):
            assert key in prov
        assert prov["versions"]["torch"].startswith("2.13.0")
        records = run.stage_records()
        assert {"student", "teacher", "tgo", "kd_kd", "eval_kd"} <= set(records)
        for name, rec in records.items():
            assert rec["config_hash"] == cfg.hash() and rec["stage_key"] == run.stage_key(name)
    assert outs[0] == outs[1]


def test_committed_records_never_hold_one_machines_folder(tmp_path):
    """config.json and a dataset's made_by.json record run_root relative to the repository, or only its folder's
    name when it is outside it (a home folder's path would be committed with the results)."""
    from dgpo_lib.config import load_config
    from dgpo_lib.data.loaders import REPO_ROOT, recorded_path

    assert recorded_path(tmp_path / "dgpo_runs") == "dgpo_runs" and recorded_path(REPO_ROOT / "runs") == "runs"
    assert recorded_path("runs") == "runs"
    cfg = load_config("smoke", {"run_root": str(tmp_path / "dgpo_runs")})
    assert cfg.to_record()["run_root"] == "dgpo_runs" and cfg.to_record()["seed"] == cfg.seed
    assert cfg.run_root == str(tmp_path / "dgpo_runs")  # the run itself still goes there
