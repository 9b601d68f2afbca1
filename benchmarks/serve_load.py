"""Load benchmark for the server: N concurrent clients on loopback, with and without micro-batching.

    python benchmarks/serve_load.py                          # trains a small model first (about half a minute)
    python benchmarks/serve_load.py --model models/default --clients 32 --requests 1000

For each mode the server runs in its own process on 127.0.0.1. ``--clients`` concurrent clients send
``--requests`` requests in all (each one sentence from the bundled dev set) and stop at ``--max-seconds`` whatever
is left. One table compares throughput, p50/p95/p99 latency and errors with batching on and off, on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rnnmt.config import CorpusConfig
from rnnmt.data import read_corpus
from rnnmt.serving import ServeSettings

log = logging.getLogger("serve_load")
MODES = {"on": ServeSettings(), "off": ServeSettings(max_batch=1, batch_wait_ms=0)}


@dataclass
class Result:
    """What one mode's run measured."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms, successful requests only
    errors: int = 0
    batch_texts: list[int] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def machine(threads: int) -> str:
    """CPU model and core count, with the server's torch thread count."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    threads = threads or torch.get_num_threads()
    return f"{model}, {os.cpu_count()} cores; server: torch {torch.__version__}, {threads} threads"


def train_small_model(folder: Path) -> Path:
    """A model of the default config's size, trained only briefly: its speed is real, its Hindi is not."""
    from rnnmt.config import config_from_dict
    from rnnmt.training import train

    train(config_from_dict({
        "name": "serve-load", "data": {"train": [{"bundled": "train", "limit": 1000}], "dev": None},
        "vocab": {"src_size": 1000, "tgt_size": 1200},
        "model": {"emb_size": 128, "hidden_size": 256, "dropout": 0.0},
        "train": {"max_steps": 100, "log_every": 50, "valid_every": 1000, "batch_tokens": 1500, "threads": 1},
    }), folder)
    return folder


def serve(model: str, settings: dict[str, Any], sock: socket.socket, threads: int) -> None:
    """The server process: load the model and serve on the socket it was handed."""
    import torch
    import uvicorn

    from rnnmt.serving import create_app
    from rnnmt.translator import Translator

    if threads:
        torch.set_num_threads(threads)
    app = create_app(Translator.load(model, "cpu"), ServeSettings(**settings))
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


async def wait_until_up(client: httpx.AsyncClient, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (await client.get(f"{url}/health")).status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def one_client(client: httpx.AsyncClient, url: str, jobs: list[dict], deadline: float, result: Result) -> None:
    """Take requests off the shared list until it is empty or time is up."""
    while jobs and time.monotonic() < deadline:
        body = jobs.pop()
        start = time.perf_counter()
        try:
            response = await client.post(f"{url}/translate", json=body)
        except httpx.HTTPError:
            result.errors += 1
            continue
        if response.status_code != 200:
            result.errors += 1
            continue
        result.latencies.append((time.perf_counter() - start) * 1000)
        result.batch_texts.append(response.json()["timings"]["batch_texts"])


async def load(url: str, bodies: list[dict], clients: int, max_seconds: float) -> Result:
    """Warm up, then run ``clients`` clients over all ``bodies``, bounded by ``max_seconds``."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
        await wait_until_up(client, url)
        for body in bodies[:3]:
            await client.post(f"{url}/translate", json=body)
        result, jobs = Result(), list(reversed(bodies))
        start = time.perf_counter()
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(*(one_client(client, url, jobs, deadline, result) for _ in range(clients)))
        result.seconds = time.perf_counter() - start
        return result


def run_mode(model: str, settings: ServeSettings, bodies: list[dict], args: argparse.Namespace) -> Result:
    """Start a server process with these settings, load it, stop it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(model, asdict(settings), sock, args.threads))
    process.start()
    try:
        return asyncio.run(load(url, bodies, args.clients, args.max_seconds))
    finally:
        process.terminate()
        process.join(10)
        sock.close()


def table(results: dict[str, Result]) -> list[str]:
    """One row per measure; the last column is batching on divided by off."""
    rows = [("throughput (requests/s)", lambda r: len(r.latencies) / r.seconds, "{:.1f}"),
            ("latency p50 (ms)", lambda r: r.percentile(50), "{:.1f}"),
            ("latency p95 (ms)", lambda r: r.percentile(95), "{:.1f}"),
            ("latency p99 (ms)", lambda r: r.percentile(99), "{:.1f}"),
            ("errors", lambda r: r.errors, "{:d}"),
            ("requests answered", lambda r: len(r.latencies), "{:d}"),
            ("texts per model call (mean)", lambda r: sum(r.batch_texts) / max(len(r.batch_texts), 1), "{:.1f}")]
    lines = [f"{'':30}{'batching on':>14}{'batching off':>14}{'on / off':>10}"]
    for name, measure, form in rows:
        on, off = measure(results["on"]), measure(results["off"])
        ratio = f"{on / off:.2f}x" if off else "-"
        lines.append(f"{name:30}{form.format(on):>14}{form.format(off):>14}{ratio:>10}")
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a model folder (default: train a small one in a temporary folder)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--requests", type=int, default=400, help="requests per mode, one sentence each")
    p.add_argument("--max-seconds", type=float, default=60, help="stop each mode after this long")
    p.add_argument("--beam-size", type=int, default=1, help="beam size of every request")
    p.add_argument("--threads", type=int, default=1,
                   help="the server's torch CPU threads; 0 is torch's choice, which on a small or busy machine "
                        "competes with the event loop and the clients")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(train_small_model(Path(tmp) / "model"))
        sentences = [en for en, _ in read_corpus(CorpusConfig(bundled="dev"))]
        bodies = [{"text": sentences[i % len(sentences)], "beam_size": args.beam_size} for i in range(args.requests)]
        results = {}
        for mode, settings in MODES.items():
            log.info("batching %s: %d clients, %d requests", mode, args.clients, args.requests)
            results[mode] = run_mode(model, settings, bodies, args)
    on, off = MODES["on"], MODES["off"]
    print(f"\nrnnmt serve on loopback: {args.clients} clients, {args.requests} requests of one sentence, "
          f"beam {args.beam_size}, at most {args.max_seconds:g} s per mode")
    print(f"model: {args.model or 'a briefly trained model of the default size (emb 128, hidden 256, GRU)'}")
    print(f"machine: {machine(args.threads)}")
    print(f"batching on: wait {on.batch_wait_ms:g} ms for up to {on.max_batch} texts; off: max_batch {off.max_batch}\n")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
