"""`openrlhf-video serve-reward` over real HTTP on loopback, including OpenRLHF's own client."""

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
import requests

TOKEN = "s3cret-token"
PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|vision_end|>When does the door open?<|im_end|>\n<|im_start|>assistant\n"
)
TVG = {"task": "tvg", "span": [3.0, 5.0], "duration": 30.0}
MCQ = {"task": "mcq", "answer": "B", "options": ["a dog", "a cat"]}


def decoded(response):
    """The query as OpenRLHF sends it: decoded with special tokens and the expanded pad run."""
    return PROMPT.replace("<|video_pad|>", "<|video_pad|>" * 200) + response + "<|im_end|><|endoftext|>"


def start_server(*flags, stderr=subprocess.DEVNULL):
    """`openrlhf-video serve-reward --port 0 FLAGS` in a subprocess; returns it and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "openrlhf_video.cli", "serve-reward", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "RLT_TOKEN": TOKEN},
    )
    line = process.stdout.readline()  # "reward server listening on http://127.0.0.1:PORT"
    assert "listening on http://127.0.0.1:" in line, line
    return process, line.split()[-1]


@pytest.fixture(scope="module")
def server():
    process, url = start_server("--token-env", "RLT_TOKEN")
    yield url
    process.terminate()
    process.wait(timeout=10)


def post(url, body, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(url, data=data, headers=headers, timeout=30, **kwargs)


def test_scores_full_decoded_queries(server):
    queries = [decoded("<think>t</think><answer>3 - 5</answer>"), decoded("<think>t</think><answer>B</answer>")]
    reply = post(f"{server}/get_reward", {"query": queries, "prompts": [PROMPT, PROMPT], "labels": [TVG, MCQ]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["rewards"] == [1.0, 1.0] and body["scores"] == [1.0, 1.0]
    assert body["extra_logs"]["format"] == [1.0, 1.0] and body["extra_logs"]["iou"] == [1.0, 0.0]


def test_labels_may_be_json_text_and_prompts_may_be_omitted(server):
    reply = post(server, {"query": [decoded("<think>t</think><answer>0 - 5</answer>")], "labels": [json.dumps(TVG)]})
    assert reply.status_code == 200 and reply.json()["rewards"] == [pytest.approx(0.5 + 0.5 * 0.4)]


def test_model_output_and_bad_labels_never_fail_a_request(server):
    junk = ["", "\x00", "<answer>" * 1000, "9" * 5000 + " - 1", "<|im_start|>assistant"]
    labels = [TVG, MCQ, {"task": "nope"}, "not json", 7]
    reply = post(server, {"query": junk, "labels": labels})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["rewards"]) == 5 and body["extra_logs"]["unscored"] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert requests.get(f"{server}/health", timeout=10).json()["unscored"] >= 3


@pytest.mark.parametrize(
    "body, message",
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe not utf-8", "not JSON"),
        ("[" * 100000, "not JSON"),
        ("[1, 2]", "JSON object"),
        ({"labels": [TVG]}, "'query'"),
        ({"query": "one string", "labels": [TVG]}, "'query'"),
        ({"query": [1, 2], "labels": [TVG, TVG]}, "'query'"),
        ({"query": ["a", "b"], "labels": [TVG]}, "'labels'"),
        ({"query": ["a"], "prompts": ["p", "q"], "labels": [TVG]}, "'prompts'"),
    ],
)
def test_malformed_bodies_get_400_naming_the_problem(server, body, message):
    reply = post(server, body)
    assert reply.status_code == 400 and message in reply.json()["error"]


def test_too_large_body_gets_a_counted_413_naming_the_flag():
    process, url = start_server("--max-body-mb", "1")
    try:
        reply = post(url, {"query": ["x" * 2**21], "labels": [TVG]}, token=None)
        assert reply.status_code == 413 and "--max-body-mb" in reply.json()["error"]
        assert requests.get(f"{url}/health", timeout=10).json()["rejected"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_refused(server, token):
    reply = post(server, {"query": ["x"], "labels": [TVG]}, token=token)
    assert reply.status_code == 401 and "token" in reply.json()["error"]


def test_health_reports_settings_and_counts(server):
    before = requests.get(f"{server}/health", timeout=10).json()
    assert before["status"] == "ok" and before["think"] is True
    assert post(server, {"query": ["x", "y"], "labels": [TVG, TVG]}).status_code == 200
    after = requests.get(f"{server}/health", timeout=10).json()
    assert after["requests"] == before["requests"] + 1 and after["responses"] == before["responses"] + 2


@pytest.mark.parametrize("flag", ["--reward-weights", "--weights"])  # the second: its old name, hidden
def test_bad_command_line_fails_with_a_message(flag, capsys):
    from reward_plugins.server import main

    with pytest.raises(SystemExit) as exit_info:
        main([flag, "precision=2"])
    assert exit_info.value.code == 2 and "--reward-weights: " in capsys.readouterr().err


def test_openrlhf_http_client_gets_rewards(server):
    """OpenRLHF's own remote-reward client (SingleTurnAgentExecutor over HTTP) against the server;
    it sends no headers of its own, so the token travels in the URL."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=[f"{server}/get_reward?token={TOKEN}"])
    query = decoded("<think>the door</think><answer>from 3.0 to 6.0 seconds</answer>")
    start = time.time()
    [reply] = asyncio.run(executor._fetch_rewards_via_http([query], [PROMPT], [TVG]))
    assert time.time() - start < 5  # no retries happened
    assert reply["rewards"] == [pytest.approx(0.5 * 2 / 3 + 0.5)]
    assert reply["extra_logs"]["iou"] == [pytest.approx(2 / 3)]


def test_workers_share_one_port_and_stop_together():
    process, url = start_server("--workers", "2", "--no-think")
    body = {"query": ["<answer>3 - 5</answer>"] * 64, "labels": [TVG] * 64}
    replies = [post(url, body, token=None) for _ in range(20)]
    assert all(r.status_code == 200 and r.json()["rewards"] == [1.0] * 64 for r in replies)
    # The kernel spreads new connections over both processes (SO_REUSEPORT): 2^-19 odds against.
    assert len({requests.get(f"{url}/health", timeout=10).json()["pid"] for _ in range(20)}) == 2
    process.terminate()
    assert process.wait(timeout=10) == 0
    time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):  # the forked worker is gone too
        requests.get(f"{url}/health", timeout=2)
