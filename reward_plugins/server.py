"""`openrlhf-video serve-reward`: the rewards over HTTP, in OpenRLHF's remote-reward protocol.

POST {"query": [...], "prompts": [...], "labels": [...]} to / or /get_reward and get
{"rewards": [...], "scores": [...], "extra_logs": {name: [...]}} back; GET /health.
Queries may be the full decoded text with special tokens, exactly as OpenRLHF sends them.
A malformed body gets a 400 naming the field; model output and bad labels never fail a
request (they score 0 and are counted), so training never stops on a reward.

OpenRLHF's client sends no headers of its own, so besides `Authorization: Bearer TOKEN` the
token is also accepted as `?token=TOKEN` in the URL given to `--reward.remote_url`.
"""

import argparse
import asyncio
import hmac
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys

from aiohttp import web

from reward_plugins.protocol import parse_weights, score_batch

logger = logging.getLogger("reward_plugins")


def build_app(*, think: bool = True, weights: dict | None = None, token: str | None = None, max_body_mb: int = 256):
    counts = {"requests": 0, "responses": 0, "unscored": 0, "rejected": 0}

    def reject(status, message):
        counts["rejected"] += 1
        return web.json_response({"error": message}, status=status)

    async def reward(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return reject(401, "missing or wrong token (send 'Authorization: Bearer TOKEN' or ?token=TOKEN)")
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge as error:  # aiohttp's own reply is plain text and uncounted
            return reject(413, f"body too large: {error.text}; start the server with a larger --max-body-mb")
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
            return reject(400, f"body is not JSON: {error}")
        if not isinstance(body, dict):
            return reject(400, f"body must be a JSON object, got {type(body).__name__}")
        queries, prompts, labels = body.get("query"), body.get("prompts"), body.get("labels")
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            return reject(400, "field 'query' must be a list of strings")
        if not isinstance(labels, list) or len(labels) != len(queries):
            return reject(400, f"field 'labels' must be a list with one label per query ({len(queries)})")
        if prompts is not None and not (isinstance(prompts, list) and len(prompts) == len(queries)):
            return reject(400, f"field 'prompts' must be null or a list with one prompt per query ({len(queries)})")
        out = score_batch(queries, prompts, labels, think=think, weights=weights)
        counts["requests"] += 1
        counts["responses"] += len(queries)
        counts["unscored"] += int(sum(out["extra_logs"]["unscored"]))
        return web.json_response(out)

    async def health(request: web.Request) -> web.Response:  # counts are this worker's own
        return web.json_response(
            {"status": "ok", "pid": os.getpid(), "think": think, "weights": weights or {}, **counts}
        )

    app = web.Application(client_max_size=max_body_mb * 2**20)
    app.add_routes([web.post("/", reward), web.post("/get_reward", reward), web.get("/health", health)])
    return app


async def _serve(app, sock: socket.socket) -> None:
    runner = web.AppRunner(app, access_log=None)  # an access line per request would halve throughput
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _serve_forever(app, sock: socket.socket) -> None:
    try:
        asyncio.run(_serve(app, sock))
    except KeyboardInterrupt:
        pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="openrlhf-video serve-reward",
        description="Serve the video rewards in OpenRLHF's remote-reward protocol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port (printed at start)")
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument("--token-env", default=None, help="read the bearer token from this environment variable")
    parser.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="format reward expects <think>…</think><answer>…</answer> (default) or only <answer>",
    )
    parser.add_argument(
        "--reward-weights",
        default="",
        help="override the reward presets, e.g. iou=0.7,format=0.3 (train: --video.reward_weights)",
    )
    # The flag's first name, which the README showed; hidden, so the help names one flag per concept.
    parser.add_argument("--weights", dest="reward_weights", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--max-body-mb", type=int, default=256, help="largest accepted request body")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (scoring is GIL-bound)")
    args = parser.parse_args(argv)

    token = args.token
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            parser.error(f"--token-env {args.token_env}: that environment variable is unset or empty")
    try:
        weights = parse_weights(args.reward_weights)
    except ValueError as error:
        parser.error(f"--reward-weights: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s without a token: anyone who can reach it can use it", args.host)
    app = build_app(think=args.think, weights=weights, token=token, max_body_mb=args.max_body_mb)

    # One listening socket, bound here and inherited by forked workers: the kernel spreads
    # connections over them, and --port 0 yields one port for all.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        sock = socket.create_server((args.host, args.port), family=family, backlog=1024)
    except OSError as error:  # in use, not an address of this machine, a privileged port
        print(f"openrlhf-video serve-reward: cannot listen on --host {args.host} --port {args.port}: "
              f"{error.strerror}; pick another --port (0 picks a free one)", file=sys.stderr)  # fmt: skip
        return 2
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    # Printed (and flushed) so scripts started with --port 0 can read the port that was bound.
    print(f"reward server listening on http://{host}:{sock.getsockname()[1]}", flush=True)
    fork = multiprocessing.get_context("fork")
    for _ in range(args.workers - 1):
        fork.Process(target=_serve_forever, args=(app, sock), daemon=True).start()
    # SIGTERM becomes a normal exit, so multiprocessing stops the daemon workers with us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _serve_forever(app, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
