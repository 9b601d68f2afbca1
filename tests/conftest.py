"""Shared fixtures: a tiny trained model folder, and the path of the real corpora when present."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rnnmt.config import config_from_dict

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tiny_config(**sections) -> dict:
    """A small, fast config on the first 200 bundled pairs; pass sections to change fields."""
    raw = {
        "name": "tiny",
        "data": {"train": [{"bundled": "train", "limit": 200}], "dev": {"bundled": "dev", "limit": 20}},
        "vocab": {"src_size": 200, "tgt_size": 250},
        "model": {"emb_size": 32, "hidden_size": 64, "attention": "luong_general", "dropout": 0.0},
        "train": {"max_steps": 600, "max_epochs": 100, "valid_every": 300, "log_every": 50, "batch_tokens": 500,
                  "threads": 1, "lr": 0.005, "amp": "off"},  # fp32, so results do not depend on the CPU's bf16 units
        "search": {"beam_size": 1},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder trained for a few seconds: wrong translations, but every part real."""
    from rnnmt.training import train

    folder = tmp_path_factory.mktemp("models") / "tiny"
    train(config_from_dict(tiny_config()), folder)
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip that says why."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the real corpora are not here ({SHARED_DATA} is absent); CI has them")
    return SHARED_DATA


@contextlib.contextmanager
def served(app) -> Iterator[tuple[str, int]]:
    """``app`` served by uvicorn on a free loopback port, in a thread, while the block runs; yields (host, port)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
