"""Load benchmark for the server: N concurrent clients on loopback, with and without micro-batching.

    python benchmarks/serve_load.py                          # trains a small model first (about half a minute)
    python benchmarks/serve_load.py --model models/default --clients 32 --requests 1000
    python benchmarks/serve_load.py --body-mb 300            # instead: one chunked 300 MiB POST against the limit

For each mode the server runs in its own process on 127.0.0.1. ``--clients`` concurrent clients send
``--requests`` requests in all (each one sentence from the bundled dev set) and stop at ``--max-seconds`` whatever
is left. One table compares throughput, p50/p95/p99 latency and errors with batching on and off, on this machine.

``--body-mb`` measures the body limit instead: one client sends a chunked POST /translate of that many MiB (no
Content-Length, so only counting the bytes can stop it) and reports the answer, how much had left the client by
then, how long it took, and the server's peak memory before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import multiprocessing
import select
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rnnmt.config import CorpusConfig
from rnnmt.data import read_corpus
from rnnmt.serving import ServeSettings

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

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


def peak_memory_mib(pid: int) -> float:
    """A process's peak resident memory (VmHWM) in MiB; NaN where /proc is absent."""
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return float("nan")
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def send_chunked(port: int, total: int, chunk: int = 1 << 16) -> tuple[int, int, str]:
    """A chunked POST /translate of up to ``total`` bytes that stops once the server answers: bytes sent, the
    status and the error code."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        frame, sent = b"%x\r\n%s\r\n" % (chunk, b"a" * chunk), 0
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(frame)
                sent += chunk
            if sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection after answering
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read() or b"{}")
        return sent, response.status, body.get("error", {}).get("code", "")


def body_limit(model: str, megabytes: int) -> list[str]:
    """Send one chunked body of ``megabytes`` MiB to a fresh server and report what the body limit did."""
    settings = ServeSettings()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(model, asdict(settings), sock, 1))
    process.start()
    try:
        async def up() -> None:
            async with httpx.AsyncClient(trust_env=False) as client:
                await wait_until_up(client, f"http://127.0.0.1:{sock.getsockname()[1]}")

        asyncio.run(up())
        before = peak_memory_mib(process.pid)
        start = time.perf_counter()
        sent, status, code = send_chunked(sock.getsockname()[1], megabytes << 20)
        seconds = time.perf_counter() - start
        after = peak_memory_mib(process.pid)
    finally:
        process.terminate()
        process.join(10)
        sock.close()
    return [f"chunked POST /translate of {megabytes} MiB, limit {settings.max_body_bytes:,} bytes",
            f"answer: {status} {code} after {seconds * 1000:.0f} ms, when {sent / 2**20:.1f} MiB had left the client "
            f"(sent, or waiting in the sockets' buffers)",
            f"server peak memory: {before:.0f} MiB before, {after:.0f} MiB after"]


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
    p.add_argument("--body-mb", type=int, default=0,
                   help="instead of the load test, send one chunked POST of this many MiB against the body limit")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(train_small_model(Path(tmp) / "model"))
        if args.body_mb:
            print("\n".join(["", *body_limit(model, args.body_mb), f"machine: {machine(1)}"]))
            return
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
