"""Data-parallel training (rlhflab/distributed.py): 2 CPU processes on gloo take the same steps as
one process on the same global batches, for SFT, the reward model and DPO."""

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlhflab.cli import main
from rlhflab.config import build_config
from rlhflab.config.text import TextDPOConfig, TextPPOConfig, TextRewardConfig
from rlhflab.policy.dpo import train_dpo
from rlhflab.policy.sft import train_sft
from rlhflab.policy.text import TextRL
from rlhflab.reward.text import TextRewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.text.models import TextRewardModel, build_word_tokenizer, tiny_gpt2
from rlhflab.text.task import TASKS
from rlhflab.text_loop import TextInterrupted, TextLoop, TextRunError
from rlhflab.types import RankedResponses

WORDS = ["good", "bad", "fine", "awful", "great", "dull", "film", "plot", "acting", "was", "the"]


def _data():
    rng = np.random.default_rng(0)

    def sentence(k):  # uneven lengths: shards hold different token counts
        return " ".join(rng.choice(WORDS, size=k))

    prompts = [sentence(2) for _ in range(12)]
    responses = [sentence(int(rng.integers(1, 6))) for _ in range(12)]
    pairs = [(p, sentence(3), sentence(int(rng.integers(1, 5)))) for p in prompts]
    comparisons = [
        RankedResponses(prompt=p, responses=(a, b), query_id=i) for i, (p, a, b) in enumerate(pairs)
    ]
    return prompts, responses, pairs, comparisons


def _train() -> dict:
    """SFT, then DPO from the SFT model against it, then a reward model: losses and weights."""
    tokenizer = build_word_tokenizer(WORDS)
    prompts, responses, pairs, comparisons = _data()
    model = tiny_gpt2(len(tokenizer), 1, 16, n_head=2, n_positions=32, tokenizer=tokenizer)
    sft = train_sft(model, tokenizer, prompts, responses, 2, 1e-2, 4, seed=0)
    reference = tiny_gpt2(len(tokenizer), 1, 16, n_head=2, n_positions=32, tokenizer=tokenizer)
    reference.load_state_dict(model.state_dict())
    dpo = train_dpo(
        model, reference, tokenizer, pairs, TextDPOConfig(epochs=2, batch_size=4, lr=1e-2)
    )
    cfg = TextRewardConfig(batch_size=4, epochs=2, val_fraction=0.25, patience=10, min_steps=0)
    rm = TextRewardEnsemble(TextRewardModel(reference.transformer), tokenizer, 2, seed=0, cfg=cfg)
    rm_log: list[float] = []
    rm.fit(comparisons, lambda r: rm_log.append(r["rm_train_loss"]))
    policy = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    # a PPO step: each rank samples its half of the prompts; the ranks must stay in step
    rl = TextRL(
        model, reference, tokenizer, rm.score, TextPPOConfig(batch_size=4, minibatches=2), 4, 1.0
    )
    record = rl.step(prompts[:4])
    return {
        "ppo_record": record,
        "ppo_policy": torch.cat([p.detach().reshape(-1) for p in model.parameters()]),
        "sft": sft,
        "dpo": dpo,
        "rm": rm_log,
        "policy": policy,
        "rm_head": torch.cat([m.head.weight.detach().reshape(-1) for m in rm.members]),
    }


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        result = _train()
        torch.save(result, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_take_the_single_process_steps(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank, args=(port, str(tmp_path)), nprocs=2, start_method="fork")
    alone = _train()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert len(alone["rm"]) > 0
    for result in ranks:
        for key in ("sft", "dpo", "rm"):
            assert np.allclose(result[key], alone[key], rtol=1e-4, atol=1e-5), key
        for key in ("policy", "rm_head"):
            # Adam divides by √v, so float rounding in the summed gradients shows as ~1e-4 after
            # a dozen steps of lr 1e-2; a wrongly weighted shard would move weights by ~lr
            assert float((result[key] - alone[key]).abs().max()) < 5e-4, key
    # PPO: the ranks sampled different halves, yet took one identical step, and logged the
    # means of the whole batch
    assert torch.equal(ranks[0]["ppo_policy"], ranks[1]["ppo_policy"])
    assert ranks[0]["ppo_record"] == ranks[1]["ppo_record"]
    assert not torch.equal(ranks[0]["ppo_policy"], ranks[0]["policy"])
    # training moved: the comparison is not of two untouched models
    assert alone["sft"][-1] < alone["sft"][0]


def test_nproc_is_for_text_runs(cli, tmp_path):
    out = cli("run", "--nproc", "2", "--out", str(tmp_path / "run"), "env=CartPole-v1")
    assert out.returncode == 2
    assert "multi-process training is for text runs only" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def _resume_rank(rank: int, port: int, run: str, codes: str) -> None:
    """One torchrun-like rank of `rlhflab run --resume RUN` (torchrun sets these variables)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )
    code = main(["run", "--resume", run])
    Path(codes, f"rank{rank}").write_text(str(code))


def test_a_run_stopped_in_one_process_resumes_in_two(tmp_path):
    """Rank 0 alone holds the run directory: it sends the checkpoints to rank 1, and both
    continue PPO from iteration 2 (a rank starting over would fall out of step with the other)."""
    tokenizer = build_word_tokenizer(TASKS["reviews"].vocabulary)
    model = tiny_gpt2(len(tokenizer), 1, 16, n_head=2, n_positions=32, tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    cfg = build_config(
        None,
        [
            f"text.model={tmp_path / 'model'}",
            "text.methods=[ppo]",
            "text.ppo.steps=4",
            "text.ppo.batch_size=4",
            "text.ppo.minibatches=2",
            "text.labels=8",
            "text.eval_prompts=4",
            "text.sft.demonstrations=16",
            "text.sft.epochs=1",
            "text.reward.epochs=1",
            "text.max_new_tokens=4",
            "text.goodhart_samples=0",
        ],
    )

    def stop_at_ppo_iteration_3(record):
        if record.get("phase") == "ppo" and record["iteration"] == 3:
            raise KeyboardInterrupt

    run = RunDir.fresh(tmp_path / "run")
    run.write_config(cfg)
    with pytest.raises(TextInterrupted, match="ppo at iteration 2"):
        TextLoop(cfg, run, on_log=stop_at_ppo_iteration_3).run()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks = mp.start_processes(
        _resume_rank,
        args=(port, str(run.path), str(tmp_path)),
        nprocs=2,
        start_method="fork",
        join=False,
    )
    deadline = time.monotonic() + 120  # ranks out of step would wait at a collective for hours
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ranks.processes:
                p.kill()
            pytest.fail("the two ranks did not finish: out of step?")
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["0", "0"]
    log = run.metrics()
    assert [r["iteration"] for r in log if r["phase"] == "ppo"] == [1, 2, 3, 4]
    phases = [r["phase"] for r in log]
    assert "sft" not in phases[phases.index("ppo") :]  # SFT and the reward model were not redone
    assert phases.count("reward_model") == phases[: phases.index("ppo")].count("reward_model")
    assert "ppo" in json.loads(run.summary_path.read_text())["methods"]


def test_each_rank_computes_on_its_local_gpu_when_cuda_is_there(monkeypatch, tmp_path):
    """The helper's choice, with CUDA mocked absent and present (this machine has no GPU: what
    runs on one is not tested here)."""
    from rlhflab import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.device("auto") == distributed.device("cpu") == torch.device("cpu")
    with pytest.raises(distributed.DeviceError, match="CUDA is not available"):
        distributed.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.device("auto") == distributed.device("cuda") == torch.device("cuda", 1)
    assert distributed.device("cpu") == torch.device("cpu")
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("cuda", d)))
    monkeypatch.setattr(torch, "set_default_device", lambda d: calls.append(("default", d)))
    assert distributed.place("auto") == torch.device("cuda", 1)
    assert calls == [("cuda", torch.device("cuda", 1)), ("default", torch.device("cuda", 1))]
    monkeypatch.setenv("LOCAL_RANK", "2")  # 3 processes on a node of 2 GPUs
    with pytest.raises(distributed.DeviceError, match="local rank 2 has no GPU"):
        distributed.device("auto")
    # a text run asked for a GPU on a machine without one stops before its first step
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = build_config(None, ["text.device=cuda"])
    with pytest.raises(TextRunError, match=r"text\.device=cuda: CUDA is not available"):
        TextLoop(cfg, RunDir.fresh(tmp_path / "run")).run()
