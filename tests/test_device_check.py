"""scripts/device_check.sh, the prepared GPU check, on the CPU (as CI runs it): each step's exit status and seconds
in one JSON, a failing step reported and turned into a failing exit status, the benchmarks' JSON redirected."""
import json
import os
import subprocess
import sys

from dgpo_lib.data.loaders import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "device_check.sh"


def _run(tmp_path, stages: str):
    env = {**os.environ, "DEVICE_CHECK_STAGES": stages, "DEVICE_CHECK_BENCH": "0", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)


def test_the_device_check_runs_smoke_stages_and_records_each(tmp_path):
    p = _run(tmp_path, "student")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads((tmp_path / "device_check_cpu.json").read_text())
    assert report["device"] == "cpu" and report["passed"] and report["gpu"] is None
    [step] = report["steps"]
    assert step["step"] == "stage_student" and step["rc"] == 0 and step["seconds"] > 0
    assert (tmp_path / "stage_student.log").exists() and (tmp_path / "runs").is_dir()  # the run stays in OUT
    assert "git_commit" in report["provenance"]


def test_a_failing_step_fails_the_check_and_shows_its_log(tmp_path):
    p = _run(tmp_path, "no_such_stage")
    assert p.returncode == 1
    assert "stage_no_such_stage failed" in p.stdout and "FAILED" in p.stdout
    report = json.loads((tmp_path / "device_check_cpu.json").read_text())
    assert not report["passed"] and report["steps"][0]["rc"] != 0


def test_benchmark_results_go_where_the_environment_says(tmp_path):
    code = "import sys; sys.path.insert(0, 'benchmarks'); import common; print(common.RESULTS)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "DGPO_BENCH_RESULTS": str(tmp_path)}).stdout.strip()
    assert out == str(tmp_path)
