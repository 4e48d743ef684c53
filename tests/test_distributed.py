"""fit under torchrun: 2 CPU processes, gloo, DDP and sharded batches (slow: starts 3 Pythons).

Checked against an independent single-process run: with shards ``perm[rank::2]`` of the same
permutation, the two per-process batches of b images together are exactly the images of one
single-process batch of 2b, and DDP averages the two mean gradients, so the distributed run
must reproduce the single-process run with twice the batch size (up to float rounding).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import io, json, os, sys
    import torch
    import torch.distributed as dist
    from vitcourse.data.digits import load_digits
    from vitcourse.data.pipeline import ImageData
    from vitcourse.models.vit import VisionTransformer
    from vitcourse.training.loop import fit

    out = sys.argv[1]
    batch = int(sys.argv[2])
    train, _ = load_digits()
    train = ImageData(train.images[:128], train.labels[:128], 10)  # 128: shards need no padding
    torch.manual_seed(0)
    model = VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=10,
                              embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
    captured = io.StringIO()
    stderr, sys.stderr = sys.stderr, captured
    try:
        history = fit(model, train, epochs=2, lr=3e-3, batch_size=batch, seed=5, progress=True,
                      checkpoint=os.path.join(out, "ckpt.pt"))
    finally:
        sys.stderr = stderr
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.save(model.state_dict(), os.path.join(out, f"model_{world}_{rank}.pt"))
    with open(os.path.join(out, f"info_{world}_{rank}.json"), "w") as f:
        json.dump({"history": history, "stderr": captured.getvalue()}, f)
    if dist.is_initialized():
        dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run([*launch, str(script), str(ddp_dir), "16"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = subprocess.run([sys.executable, str(script), str(single_dir), "32"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0 = torch.load(ddp_dir / "model_2_0.pt", weights_only=True)
    rank1 = torch.load(ddp_dir / "model_2_1.pt", weights_only=True)
    single = torch.load(single_dir / "model_1_0.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # the processes stay in lockstep
    # Adam's first steps are nearly sign(gradient), so parameters whose gradients are close to
    # zero may move differently under float rounding; compare what the models compute instead.
    from vitcourse.data.digits import load_digits
    from vitcourse.models.vit import VisionTransformer

    def logits(state):
        model = VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=10,
                                  embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
        model.load_state_dict(state)
        with torch.no_grad():
            return model.eval()(load_digits()[1].images)

    diffs = {k: (rank0[k] - single[k]).abs().max().item() for k in rank0}
    torch.testing.assert_close(logits(rank0), logits(single), atol=1e-3, rtol=1e-3, msg=str(diffs))
    assert logits(rank0).abs().max() > 0.1  # the comparison is not between two near-zero outputs

    info0 = json.loads((ddp_dir / "info_2_0.json").read_text())
    info1 = json.loads((ddp_dir / "info_2_1.json").read_text())
    single_info = json.loads((single_dir / "info_1_0.json").read_text())
    assert "fit" in info0["stderr"] and info1["stderr"] == ""  # the progress bar on rank 0 only
    # metrics are summed over both processes: the same numbers as the single process
    for a, b in zip(info0["history"], single_info["history"], strict=False):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"])
    assert info0["history"] == info1["history"] or all(
        r0["train_loss"] == r1["train_loss"] for r0, r1 in zip(info0["history"], info1["history"], strict=False)
    )
    checkpoint = torch.load(ddp_dir / "ckpt.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and len(checkpoint["data"]) == 2  # every rank's data state
