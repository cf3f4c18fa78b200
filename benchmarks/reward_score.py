"""Responses per second for `reward_plugins.score` (and for OpenRLHF-style decoded queries) on one core.

python benchmarks/reward_score.py [--seconds 3] [--video-pads 1000]
"""

import argparse
import os
import random
import time

from reward_plugins import score
from reward_plugins.protocol import score_batch

PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|vision_end|>Find the moment: person opens the door.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
REASONING = "The person walks in, looks around and reaches for the handle; the door moves after that. " * 4


def make_samples(count: int, seed: int = 0):
    """A mix of tasks and of the ways models answer, right and wrong, with R1-length reasoning."""
    rng = random.Random(seed)
    options = ["a dog runs", "the cat sleeps", "a red car", "rain falls"]
    samples = []
    for _ in range(count):
        start = round(rng.uniform(0, 25), 1)
        end = round(start + rng.uniform(1, 5), 1)
        answer = rng.choice("ABCD")
        kind = rng.choice(["tvg_json", "tvg_prose", "mcq", "oeqa", "gqa", "junk"])
        if kind == "tvg_json":
            text, label = (
                f'{{"start_time": "{start}", "end_time": "{end}"}}',
                {"task": "tvg", "span": [start + 0.5, end]},
            )
        elif kind == "tvg_prose":
            text, label = f"from {start}s to {end}s", {"task": "tvg", "span": [start, end + 1], "duration": 30.0}
        elif kind == "mcq":
            text, label = f"({answer}) {options[ord(answer) - 65]}", {"task": "mcq", "answer": "B", "options": options}
        elif kind == "oeqa":
            text, label = "The red car.", {"task": "oeqa", "answer": "red car"}
        elif kind == "gqa":
            text = f"{answer}, {start} - {end}"
            label = {"task": "gqa", "answer": "C", "options": options, "span": [start, end]}
        else:
            text, label = "I cannot tell from the video.", {"task": "tvg", "span": [1.0, 2.0]}
        think = f"<think>{REASONING[: rng.randint(50, len(REASONING))]}</think>" if rng.random() < 0.9 else ""
        samples.append((f"{think}<answer>{text}</answer>", label))
    return samples


def rate(work, count: int, seconds: float) -> float:
    """Items per second of `work()` (which handles `count` items), repeated for about `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        done += count
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--video-pads", type=int, default=1000, help="<|video_pad|> tokens in each decoded query")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as promised

    samples = make_samples(1000)
    per_response = rate(lambda: [score(response, label) for response, label in samples], len(samples), args.seconds)
    print(f"score(): {per_response:,.0f} responses/s on one core ({1e6 / per_response:.1f} us each)")

    # Model output is untrusted: inputs that make naive lazy or stacked-\s* regexes quadratic.
    adversarial = {
        "unclosed <answer> x20000": "<answer>" * 20000,
        "think/answer pairs x3000": "<think>" + "</think><answer></answer>" * 3000 + "x",
        "start + 20000 spaces": "start" + " " * 20000 + "x",
        "answer is + 20000 spaces": "answer is" + " " * 20000 + "xy",
        "number + 20000 spaces": "1" + " " * 20000 + "to" + " " * 20000 + "x",
    }
    label = {"task": "gqa", "answer": "A", "options": ["x", "y"], "span": [1, 2]}
    for name, response in adversarial.items():
        start = time.perf_counter()
        score(response, label)
        print(f"adversarial {name} ({len(response) / 1024:.0f} KiB): {1e3 * (time.perf_counter() - start):.1f} ms")

    prompt = PROMPT.replace("<|video_pad|>", "<|video_pad|>" * args.video_pads)
    queries = [prompt + response + "<|im_end|><|endoftext|>" for response, _ in samples]
    labels = [label for _, label in samples]
    prompts = [prompt] * len(samples)
    per_query = rate(lambda: score_batch(queries, prompts, labels), len(samples), args.seconds)
    print(
        f"score_batch() on decoded queries with {args.video_pads} video pads: {per_query:,.0f} responses/s on one core"
    )


if __name__ == "__main__":
    main()
