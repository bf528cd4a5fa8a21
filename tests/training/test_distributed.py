"""Multi-process training through torchrun: two CPU processes with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys

from model.checkpoint import load_checkpoint


def test_two_processes_train_one_model(phantom_manifest, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "cli", "train", "--manifest", str(phantom_manifest), "--preset", "smoke",
        "--out", str(run), "--max-steps-per-epoch", "4",
    ]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    info = load_checkpoint(run / "checkpoint.pt").info
    assert info["training"]["world_size"] == 2
    assert info["history"][0]["margin"] != 0.25  # AutoMargin closed the first epoch
    assert (run / "last.pt").exists()
