"""The decisive data-parallel test: 2 processes x batch B == 1 process x batch 2B, for real (accelerate, gloo)."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("mp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker(mode, model_dir, out_dir, batch, processes):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, str(WORKER)]
    else:
        accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
        command = [
            accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(WORKER),
        ]  # fmt: skip
    result = subprocess.run(
        command + [mode, model_dir, str(out_dir), str(batch)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(processes)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["trainer", "st"])
def test_two_processes_equal_one_process_with_double_batch(mode, tiny_encoder_dir_no_dropout, tmp_path):
    (single,) = run_worker(mode, tiny_encoder_dir_no_dropout, tmp_path / "one", 8, processes=1)
    rank0, rank1 = run_worker(mode, tiny_encoder_dir_no_dropout, tmp_path / "two", 4, processes=2)
    assert rank0["world_size"] == 2 and single["world_size"] == 1
    assert len(single["losses"]) == 3
    assert rank0["losses"] == pytest.approx(single["losses"], abs=1e-5)
    for name, value in single["weights"].items():
        assert torch.allclose(rank0["weights"][name], value, atol=1e-5), name
        assert torch.equal(rank0["weights"][name], rank1["weights"][name]), name
    for name, value in single["generator"].items():
        assert torch.equal(rank0["generator"][name], rank1["generator"][name]), name  # identical on both ranks
        assert torch.allclose(rank0["generator"][name], value, atol=1e-5), name
