"""`accelerate launch` with 2 CPU processes runs two DGPO steps through the same stage code (DDP over gloo), and a
GRPO step whose prompts do not divide evenly between the processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

from dgpo_lib.data.loaders import REPO_ROOT


def test_accelerate_launch_two_cpu_processes_two_dgpo_steps(tmp_path, free_port):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # 10 prompts, GRPO groups of 2: GRPO rolls out 5 questions, which two processes cannot share evenly
    common = ["--preset", "smoke", "--quiet", f"run_root={tmp_path}", "rl.steps=2", "rl.prompts_per_step=10",
              "rl.grpo_group=2", "rl.mini_batch=4"]
    # prerequisites (index, teacher, TGO, KD cold start) once, in one process
    subprocess.run([sys.executable, "-m", "dgpo_lib.pipeline.run_stage", "kd_kd", *common], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    accel = Path(sys.executable).with_name("accelerate")
    launch = [str(accel), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port",
              free_port, "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dgpo_lib.pipeline.run_stage"]
    r = subprocess.run([*launch, "rl_dgpo", *common], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    [metrics] = Path(tmp_path).glob("smoke-*/rl_dgpo/metrics.jsonl")
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2]  # one row per step: only the main process writes
    assert all("kl_teacher" in x and "vf_loss" in x for x in rows)
    assert list(Path(tmp_path).glob("smoke-*/rl_dgpo/model/model.safetensors"))
    # GRPO: 5 questions x 2 rollouts in mini-batches of 2 per process; split 3 vs 2, the processes made 3 vs 2
    # updates and the all-reduce waited forever
    r = subprocess.run([*launch, "rl_dgpo_grpo", *common], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert list(Path(tmp_path).glob("smoke-*/rl_dgpo_grpo/model/model.safetensors"))
