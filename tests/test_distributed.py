"""DDP: two ranks take exactly the step one process takes on their averaged gradients, and torchrun trains."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from conftest import tiny_config
from rnnmt.batching import collate
from rnnmt.config import ModelConfig
from rnnmt.distributed import World, join
from rnnmt.model import build_model
from rnnmt.training import sequence_loss, train_step
from rnnmt.translator import Translator

CONFIG = ModelConfig(cell="gru", emb_size=8, hidden_size=12, attention="luong_general", dropout=0.0)
BATCHES = [  # one batch per rank: (English ids, Hindi ids) pairs of different lengths
    [([5, 6, 7, 3], [2, 9, 10, 3]), ([8, 3], [2, 11, 3])],
    [([9, 10, 11, 12, 3], [2, 12, 13, 14, 15, 3]), ([13, 14, 3], [2, 16, 3])],
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world = join(torch.device("cpu"))
    torch.manual_seed(rank)  # different initial weights on each rank: DDP must copy rank 0's
    model = build_model(CONFIG, 20, 20)
    replica = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train_step(replica, optimizer, collate(BATCHES[world.rank]), clip_norm=0.05, label_smoothing=0.1)
    torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
    world.leave()


def test_two_ranks_step_as_one_process_on_the_mean_gradient(tmp_path):
    mp.spawn(rank_main, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = build_model(CONFIG, 20, 20)  # rank 0's initial weights
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    gradients = []
    for examples in BATCHES:
        batch = collate(examples)
        model.zero_grad()
        (sequence_loss(model(batch.src, batch.src_len, batch.tgt_in), batch.tgt_out, 0.1) / batch.tokens).backward()
        gradients.append([p.grad.clone() for p in model.parameters()])
    for p, g0, g1 in zip(model.parameters(), *gradients, strict=True):
        p.grad = (g0 + g1) / 2
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
    optimizer.step()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, expected in model.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name], expected, rtol=1e-5, atol=1e-6)


def test_each_rank_gets_an_equal_share_of_the_batches():
    batches = [[i] for i in range(7)]
    shares = [World(rank, 3).share(batches) for rank in range(3)]
    assert shares == [[[0], [3]], [[1], [4]], [[2], [5]]]  # the seventh would leave one rank waiting
    assert World().share(batches) == batches


@pytest.mark.slow
def test_torchrun_trains_a_model_folder(tmp_path):
    config = tiny_config(train={"max_steps": 40, "valid_every": 20})
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    folder = tmp_path / "model"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run = subprocess.run([*torchrun, "-m", "rnnmt", "train", str(path), "--model-dir", str(folder)],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["steps"] == 40  # steps are shared: each rank took 40, on half of each epoch's batches
    assert run.stdout.count("dev BLEU") == 1  # the leader alone reports
    log = (folder / "train.log").read_text(encoding="utf-8")
    assert log.count("step 20:") == 1 and log.count("step 40:") == 1
    assert isinstance(Translator.load(folder).translate("How are you?"), str)
