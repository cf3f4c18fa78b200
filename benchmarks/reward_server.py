"""Throughput and latency of `openrlhf-video serve-reward` on loopback.

Starts the server in a subprocess, then drives it from this process in two phases that stop
by themselves: a closed loop (N requests in flight) for the most requests/s, and an open loop
at a fixed rate whose latency counts from each request's scheduled time, so a slow server
cannot hide its queueing. Every request carries 64 decoded queries, as OpenRLHF sends them.

    python benchmarks/reward_server.py [--rate 200] [--seconds 10] [--video-pads 128]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import aiohttp
import psutil
from reward_score import PROMPT, make_samples  # the sibling benchmark: same mix of answers


async def closed_loop(url, body, concurrency, seconds):
    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:

        async def worker():
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                errors += not await send(session, url, body)
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start  # requests in flight at the deadline finish after it
    return latencies, errors, elapsed


async def open_loop(url, body, rate, seconds):
    latencies, errors = [], 0
    count = int(rate * seconds)
    # A few connections, as a handful of OpenRLHF rollout actors would hold; requests that are
    # due while all are busy wait their turn, and that wait counts in their latency.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session:
        start = time.perf_counter()

        async def one(index):
            nonlocal errors
            scheduled = start + index / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            errors += not await send(session, url, body)
            latencies.append(time.perf_counter() - scheduled)

        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = max(time.perf_counter() - start, count / rate)  # the last request is due at (count-1)/rate
    return latencies, errors, elapsed


async def send(session, url, body) -> bool:
    """One request; True when the server answered 200 with one reward per query."""
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
            payload = await reply.read()
            return reply.status == 200 and len(json.loads(payload)["rewards"]) == 64
    except (aiohttp.ClientError, ValueError, KeyError):
        return False


def cpu_seconds(server: psutil.Process) -> tuple[float, float]:
    """CPU time used so far by the server (all workers) and by this load generator."""
    server_cpu = sum(sum(p.cpu_times()[:2]) for p in [server, *server.children()])
    return server_cpu, time.process_time()


def run_phase(name, server, phase):
    """Run one load phase and print throughput, latency, errors, and the CPU each side spent
    per request: on a shared machine the latter says what the server could do given a core."""
    before = cpu_seconds(server)
    latencies, errors, elapsed = asyncio.run(phase)
    server_cpu, client_cpu = (after - start for after, start in zip(cpu_seconds(server), before))
    latencies = sorted(latencies)
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3
    count = len(latencies)
    print(
        f"{name}: {count / elapsed:,.0f} requests/s ({64 * count / elapsed:,.0f} responses/s), "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, errors {errors} of {count}; CPU per request: "
        f"server {1e3 * server_cpu / count:.2f} ms, load generator {1e3 * client_cpu / count:.2f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the open-loop phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight in the closed-loop phase")
    parser.add_argument("--video-pads", type=int, default=128, help="<|video_pad|> tokens in each decoded query")
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve-reward --workers)")
    args = parser.parse_args()

    samples = make_samples(64)
    prompt = PROMPT.replace("<|video_pad|>", "<|video_pad|>" * args.video_pads)
    body = json.dumps(
        {
            "query": [prompt + response + "<|im_end|><|endoftext|>" for response, _ in samples],
            "prompts": [prompt] * 64,
            "labels": [label for _, label in samples],
        }
    ).encode()
    server = subprocess.Popen(
        [sys.executable, "-m", "reward_plugins.server", "--port", "0", "--workers", str(args.workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1] + "/get_reward"
        print(
            f"server {url} ({args.workers} worker process(es)); body {len(body) / 1024:.0f} KiB, "
            f"64 queries with {args.video_pads} video pads each"
        )
        asyncio.run(closed_loop(url, body, 2, 1.0))  # warm up
        process = psutil.Process(server.pid)
        run_phase(
            f"closed loop, {args.concurrency} in flight",
            process,
            closed_loop(url, body, args.concurrency, args.seconds),
        )
        run_phase(f"open loop at {args.rate:.0f} requests/s", process, open_loop(url, body, args.rate, args.seconds))
        print(f"machine load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
