"""Training throughput of every training stage: tokens/s (every token of the step's sequences, prompt and
observations included) of a healing step, a teacher SFT step, a step of each KD method on teacher text (KD also
with LoRA), a PPO/DGPO update without its rollout (full and LoRA), against a plain TRL SFTTrainer step on the same
sequences, and the padding share with and without length bucketing.

Model-FLOPs utilisation (MFU): the step's linear-layer FLOPs (2 per weight per token for a forward pass, 4 more
for a backward; attention scores and the vocabulary head at the kept positions not counted) per second, over the
GEMM rate of the models' compute dtype (`models.compute_dtype`) this script measures on the same machine in the same
run.

    .venv/bin/python benchmarks/training.py [--preset cpu] [--steps 3]
"""
from __future__ import annotations

import copy
import random
import tempfile
import time
from pathlib import Path

from common import DEVICE, matmul_flops, table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.methods import KD_ROWS, METHODS
from dgpo_lib.train.budget import kd_budget, rl_budget
from dgpo_lib.train import kd, rl
from dgpo_lib.train.batching import length_buckets, padding_share
from dgpo_lib.train.flops import flops_per_token
from dgpo_lib.config import load_config
from dgpo_lib.train.heal import heal_student
from dgpo_lib.io_utils import read_jsonl_tolerant
from dgpo_lib.models.loading import load_model, load_role
from dgpo_lib.pipeline import Run
from dgpo_lib.train.trajectories import OracleGenerator, seqs_of


def oracle_seqs(run: Run, tok, n: int):
    qs = [q for q in run.resources.train_questions() if q.metadata.get("supporting_titles")][:n]
    env = run.resources.env(None, tok, greedy=True)
    env.gen = OracleGenerator(tok, qs)
    return seqs_of(env.run(qs))


def linear_weights(model) -> int:
    """Weights of the decoder's linear layers: what a token's matmuls multiply by (the tied head excluded)."""
    import torch
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head"))


def step_time(rows) -> float:
    ts = [r["step_s"] - r.get("rollout_s", 0.0) for r in rows[1:]] or [rows[0]["step_s"]]
    return sum(ts) / len(ts)


def heal_row(run: Run, cfg, tok, steps: int) -> dict:
    """Healing steps (the pruned student distilled from the unpruned base on corpus text), as the stage runs them."""
    c = copy.deepcopy(cfg)
    c.models.heal_steps, c.train.save_every = steps, 10 ** 6
    student, _ = load_model(run.pruned_student_path(), device=DEVICE)
    base, _ = load_model(run.pruned_student_path(pruned=False), device=DEVICE)
    texts, held_out, _ = run.resources.healing_texts()
    with tempfile.TemporaryDirectory() as d:
        heal_student(student, base, tok, texts, held_out[:2], c, Path(d) / "run", Path(d) / "out", progress=False)
        m = read_jsonl_tolerant(Path(d) / "run" / "metrics.jsonl")
    t = step_time(m)
    return {"step": "Healing", "s_per_step": t, "tokens_per_s": sum(r["tokens"] for r in m) / len(m) / t}


def kd_row(name: str, method: str, student, tok, teacher, seqs, cfg, steps: int, lora: bool = False,
           micro_batch: int | None = None) -> dict:
    """Steps of a KD method on teacher text (GKD's and DistiLLM's student-generated batches switched off: what is
    timed is the method's loss and backward, not a rollout)."""
    c = copy.deepcopy(cfg)
    c.kd.steps, c.train.lora, c.train.save_every = steps, lora, 10 ** 6
    c.kd.gkd_lambda, c.kd.distillm_val_every = 0.0, 10 ** 6
    c.train.micro_batch = micro_batch or c.train.micro_batch
    with tempfile.TemporaryDirectory() as d:
        m = kd.train_kd(METHODS[method].kd, student, tok, teacher, seqs, c, kd_budget(c), Path(d), progress=False, held_out=seqs[:1])
    t = step_time(m)
    return {"step": name, "s_per_step": t, "tokens_per_s": sum(s.length for s in seqs[:c.kd.batch_size]) / t}


def trl_sft_step(path: str, seqs, batch: int, steps: int, bf16: bool) -> float:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model(path, device=DEVICE)
    ds = Dataset.from_dict({"input_ids": [s.prompt_ids + s.response_ids for s in seqs],
                            "completion_mask": [[0] * len(s.prompt_ids) + s.action_mask for s in seqs]})
    with tempfile.TemporaryDirectory() as d:
        args = SFTConfig(output_dir=d, per_device_train_batch_size=batch, max_steps=steps + 1, use_cpu=DEVICE == "cpu",
                         bf16=bf16, report_to="none", logging_steps=1, save_strategy="no", max_length=None,
                         gradient_checkpointing=False, dataset_num_proc=None, learning_rate=1e-5)
        tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        times = []

        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def on_step_begin(self, *a, **k):
                self.t = time.perf_counter()

            def on_step_end(self, *a, **k):
                times.append(time.perf_counter() - self.t)
        tr.add_callback(Clock())
        tr.train()
    return sum(times[1:]) / max(len(times) - 1, 1)


def main():
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=3)
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    teacher, tok = run.load("teacher")
    seqs = oracle_seqs(run, tok, 4 * cfg.kd.batch_size)
    batch = cfg.kd.batch_size
    tokens_per_step = sum(s.length for s in seqs[:batch])
    rows = [heal_row(run, cfg, tok, a.steps)]
    # the teacher's SFT: SeqKD's loss on the teacher itself, in its own micro-batches (the stage's settings)
    rows.append(kd_row("Teacher SFT (full)", "seqkd", load_role(cfg, "teacher")[0], tok, None, seqs, cfg,
                       a.steps, micro_batch=cfg.teacher.sft_micro_batch))
    names = {"kd": "KD", "seqkd": "SeqKD", "gkd": "GKD", "distillm": "DistiLLM", "taid": "TAID"}
    for method in KD_ROWS:
        for lora in (False, True) if method == "kd" else (False,):
            rows.append(kd_row(f"{names[method]} ({'LoRA' if lora else 'full'})", method, load_model(run.student(), device=DEVICE)[0],
                               tok, teacher if method != "seqkd" else None, seqs, cfg, a.steps, lora))
    for lora in (False, True):
        c = copy.deepcopy(cfg)
        c.rl.steps, c.train.lora, c.train.save_every = a.steps, lora, 10 ** 6
        c.rl.prompts_per_step = c.rl.mini_batch = batch
        actor, _ = load_model(run.student(), device=DEVICE)
        qs = run.resources.train_questions()
        with tempfile.TemporaryDirectory() as d:
            m = rl.train_rl(METHODS["dgpo"].rl, actor, tok, run.student(),
                            teacher, qs, lambda act, q: run.resources.env(act, tok, greedy=False).run(q), c, rl_budget(c), Path(d),
                            progress=False)
        t = step_time(m)
        ntok = sum(r["sequence_tokens"] for r in m) / len(m)  # every token of the step's sequences
        rows.append({"step": f"DGPO update ({'LoRA' if lora else 'full'})", "s_per_step": t,
                     "tokens_per_s": ntok / t, "rollout_s": sum(r["rollout_s"] for r in m) / len(m)})
    t = trl_sft_step(run.student(), seqs[:batch] * (a.steps + 2), batch, a.steps,
                     cfg.models.compute_dtype == "bfloat16")
    rows.append({"step": "TRL SFTTrainer (full)", "s_per_step": t, "tokens_per_s": tokens_per_step / t})
    lengths = [s.length for s in seqs]
    rnd = list(range(len(seqs)))
    random.Random(0).shuffle(rnd)
    arrival = [rnd[i:i + cfg.train.micro_batch] for i in range(0, len(rnd), cfg.train.micro_batch)]
    pad = {"bucketed": padding_share(lengths, length_buckets(lengths, cfg.train.micro_batch)),
           "arrival_order": padding_share(lengths, arrival)}
    import torch
    dtype = cfg.models.compute_dtype  # what the models' matmuls run in (auto resolved: float32 without AVX512-BF16)
    gemm = matmul_flops(getattr(torch, dtype))
    ws, wt = linear_weights(load_model(run.student(), device=DEVICE)[0]), linear_weights(teacher)
    for r in rows:  # linear-layer FLOPs per token (dgpo_lib/train/flops.py) over the GEMM rate
        flops = flops_per_token(r["step"], ws, wt)
        if flops is not None:
            r["mfu"] = flops * r["tokens_per_s"] / gemm
    print(table(rows, ["step", "s_per_step", "tokens_per_s", "mfu", "rollout_s"]))
    print(f"{dtype} GEMM rate measured here: {gemm / 1e9:.0f} GFLOP/s")
    print(f"padding share of computed tokens: bucketed {pad['bucketed']:.1%}, arrival order {pad['arrival_order']:.1%}")
    write(f"training_{a.preset}", {"rows": rows, "padding_share": pad, "batch": batch,
                                   "tokens_per_step": tokens_per_step, "gemm_flops": gemm, "gemm_dtype": dtype,
                                   "linear_weights": {"student": ws, "teacher": wt}}, cfg)


if __name__ == "__main__":
    main()
