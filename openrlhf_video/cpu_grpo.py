"""GRPO on CPU from OpenRLHF 0.11.2's own pieces: what `openrlhf-video demo` trains with.

`train_ppo_ray` cannot run without GPUs (placement groups, NCCL, ~60 CUDA call sites; see
shared/ENVIRONMENT.md), so here one process drives the parts it would put on Ray: vLLM's CPU
engine generating through our video AgentExecutor (rewards from reward_plugins), OpenRLHF's
Experience batching, its group_norm advantages, its Actor and PolicyLoss for the update, then the
new weights loaded into the engine and its caches reset by our patched RolloutRayActor method.
"""

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from openrlhf_video.progress import progress
from reward_plugins import PRESETS

MAX_LEN = 2048  # --data.max_len: prompt (video tokens included) + response


def in_process_llm(model_dir, *, max_len: int, seed: int = 0):
    """vLLM's `LLM` in this process, eager, one video per prompt, in the dtype the model family runs
    in on this CPU build (fp32, but Qwen3.5: bf16): the CPU engine of the demo's GRPO and of
    `select --engine local`. Applies our patches first: vLLM 0.29 needs them to start Qwen3-VL on
    CPU and to give Qwen2.5-VL its video metadata (else it rolls out at an assumed 24 fps)."""
    from openrlhf_video import families, patches

    patches.apply()

    # In-process engine (~3 s to start instead of ~25 s), 1 GiB of KV cache: read when vLLM starts.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    # A token budget per engine step that takes every prompt of a batch in one piece: vLLM discards
    # the token it samples for a prefill cut in pieces, and on CPU that fails for a request with its
    # own seed ("CPU Generator does not use offset"), which every rollout here has.
    return LLM(model=str(model_dir), dtype=families.for_model(model_dir).vllm_dtype, enforce_eager=True,
               max_model_len=max_len, limit_mm_per_prompt={"video": 1}, seed=seed,
               max_num_batched_tokens=64 * max_len)  # fmt: skip


class InProcessEngine:
    """An in-process vLLM `LLM` offering what OpenRLHF's RolloutRayActor offers an executor
    (`await generate(ids, params, multi_modal_data)`) and the trainer (cache resets, weights).

    The synchronous LLM serves one call at a time, so concurrent `generate` calls (a group's n
    samples, every prompt of a step) are gathered for a moment and sent as one batch."""

    def __init__(self, model_dir, seed: int = 0):
        # in_process_llm applies our patches: video limits; load_weights resets caches with the patched RolloutRayActor method
        threads = torch.get_num_threads()
        self.llm = in_process_llm(model_dir, max_len=MAX_LEN, seed=seed)
        torch.set_num_threads(threads)  # the caller's choice (vLLM's CPU worker sets its own)
        self._pending = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        future = asyncio.get_running_loop().create_future()
        self._pending.append(
            ({"prompt_token_ids": prompt_token_ids, "multi_modal_data": multi_modal_data}, sampling_params, future)
        )
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_later(0.02, self._generate_pending)
        return await future

    def _generate_pending(self):
        batch, self._pending = self._pending, []
        try:
            outputs = self.llm.generate([p for p, _, _ in batch], [s for _, s, _ in batch], use_tqdm=False)
        except Exception as error:  # noqa: BLE001 - every waiter must hear about it
            for _, _, future in batch:
                future.set_exception(error)
            return
        for (_, _, future), output in zip(batch, outputs):
            future.set_result(output)

    async def reset_encoder_cache(self):
        self.llm.llm_engine.reset_encoder_cache()

    async def reset_prefix_cache(self):
        self.llm.reset_prefix_cache()

    def load_weights(self, model) -> None:
        """CPU stand-in for OpenRLHF's weight sync (ActorPPOTrainer.broadcast_to_vllm ->
        WorkerWrap.update_weight, which allocates on CUDA and loads with `load_weights`, which
        fails on vLLM's CPU build): hand every parameter to `reload_weights`, then reset the
        caches with the trainer's own (patched) RolloutRayActor.reset_prefix_cache, without
        which the engine keeps the old vision tower's embeddings."""
        from openrlhf_video import patches

        weights = [(name, param.detach().clone()) for name, param in model.named_parameters()]
        self.llm.collective_rpc(_reload_weights, args=(weights,))
        asyncio.run(patches._rollout_actor_class().reset_prefix_cache(SimpleNamespace(llm=self)))


def _reload_weights(worker, weights):
    worker.model_runner.reload_weights(weights_iterator=weights)


def rollout(
    engine, processor, rows: list[dict], n: int, max_new_tokens: int, *, seed: int | None = None,
    temperature: float = 1.0, videos: list | None = None,
) -> list[list[dict]]:  # fmt: skip
    """n samples of every row through our AgentExecutor, as RolloutRayActor.generate_responses
    runs a group (all concurrently); one list of responses per row.

    `seed`: request j (row j // n, sample j % n) samples with vLLM's per-request seed `seed + j`,
    so a rollout does not depend on what the engine generated before (reproducible runs).
    `videos`: the video each row is shown (default its own; the shuffled-video control)."""
    from vllm import SamplingParams

    from openrlhf_video.rollout import AgentExecutor

    executor = AgentExecutor()

    # OpenRLHF's sampling parameters (SamplesGenerator._dispatch_prompts_to_vllm); log-probs are
    # kept to report how far the training forward is from what vLLM sampled.
    def params(j):
        return SamplingParams(temperature=temperature, max_tokens=max_new_tokens, logprobs=1,
                              skip_special_tokens=False, seed=None if seed is None else seed + j)  # fmt: skip

    videos = videos or [row["video"] for row in rows]

    async def everything():
        calls = [
            executor.execute(row["prompt"], row["label"], params(i * n + s), MAX_LEN, processor, engine, images=video)
            for i, (row, video) in enumerate(zip(rows, videos))
            for s in range(n)
        ]
        return await asyncio.gather(*calls)

    responses = asyncio.run(everything())
    return [responses[i : i + n] for i in range(0, len(responses), n)]


def grpo_step(actor, optimizer, engine, processor, rows, *, n_samples: int, max_new_tokens: int, max_norm: float = 1.0,
              updates: int = 1, train_batch_size: int | None = None, kl_coef: float = 0.0, reference=None,
              seed: int | None = None):  # fmt: skip
    """One GRPO step on `rows`: rollouts, group_norm advantages, `updates` PolicyLoss updates on the
    batch (the first at ratio 1; later ones clip), with OpenRLHF's k3 KL loss towards `reference`
    (the frozen starting policy) weighted `kl_coef` (train_ppo_ray's --algo.kl.use_loss), weight
    sync. Returns the step's metrics (reward and each component averaged over the samples whose
    task has it, loss, clip ratio, KL, grad norm, rollout/training log-prob gap, time) and the
    executor's responses. `train_batch_size`: samples per optimizer step (default: the whole batch).
    `seed`: per-request sampling seeds (see `rollout`) and the order of the optimizer steps."""
    from openrlhf.models import PolicyLoss
    from openrlhf.models.utils import compute_approx_kl, masked_mean
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.utils.config import hierarchize
    from openrlhf.utils.vlm_utils import merge_mm_train_inputs

    started = time.time()
    groups = rollout(engine, processor, rows, n_samples, max_new_tokens, seed=seed)
    rollout_seconds = time.time() - started
    responses = [r for group in groups for r in group]
    samples = [SamplesGenerator._process_response_into_experience(None, r, max_len=MAX_LEN) for r in responses]
    batch = Experience.concat_experiences(samples, processor.tokenizer.pad_token_id)
    batch.index = list(range(len(responses)))  # prompt order, n consecutive samples per group
    mm_inputs = merge_mm_train_inputs(batch.mm_train_inputs, "cpu")

    actor.eval()
    with torch.no_grad():
        batch.action_log_probs = actor(batch.sequences, batch.action_mask, batch.attention_mask, **mm_inputs)
        base_log_probs = None
        if kl_coef > 0:
            base_log_probs = reference(batch.sequences, batch.action_mask, batch.attention_mask, **mm_inputs)
    batch.kl = torch.zeros_like(batch.action_log_probs)  # no KL in the reward: it is a loss term (GRPO)
    # OpenRLHF's own reward shaping and group_norm advantages: a method that reads only these
    # settings (named as train_ppo_ray's flags), never the Ray groups it is built with.
    args = hierarchize(argparse.Namespace(**{
        "algo.advantage.estimator": "group_norm", "algo.advantage.gamma": 1.0, "algo.advantage.no_std_norm": False,
        "rollout.n_samples_per_prompt": n_samples, "reward.clip_range": (-10, 10),
        "reward.overlong_buffer_len": None, "reward.stop_properly_penalty_coef": None,
    }))  # fmt: skip
    maker = RemoteExperienceMaker(
        None, None, None, None, FixedKLController(0.0), SimpleNamespace(args=args), processor.tokenizer
    )
    (batch,) = maker.compute_advantages_and_returns([batch])
    advantages = batch.advantages

    actor.train()
    policy_loss = PolicyLoss()
    losses, clips, kls, norms = [], [], [], []
    # As ActorPPOTrainer.ppo_train: `updates` epochs (--train.max_epochs) over the batch, each in a
    # shuffled order of optimizer steps of `train_batch_size` samples (--train.batch_size). Its own
    # generator: vLLM draws from torch's global one as many times as it runs engine steps.
    size = train_batch_size or len(responses)
    shuffle = torch.Generator().manual_seed(seed or 0)
    for _ in range(updates):
        order = torch.randperm(len(responses), generator=shuffle)
        for part in (order[i : i + size] for i in range(0, len(responses), size)):
            mm_part = merge_mm_train_inputs([batch.mm_train_inputs[i] for i in part], "cpu")
            mask = batch.action_mask[part]
            log_probs = actor(batch.sequences[part], mask, batch.attention_mask[part], **mm_part)
            loss, clip_ratio, _, _, _ = policy_loss(
                log_probs, batch.action_log_probs[part], advantages[part], action_mask=mask
            )
            kl = torch.zeros(())
            if kl_coef > 0:  # ActorPPOTrainer.training_step with --algo.kl.use_loss, k3 estimator
                kl = masked_mean(compute_approx_kl(log_probs, base_log_probs[part], kl_estimator="k3"), mask)
            optimizer.zero_grad()
            (loss + kl_coef * kl).backward()
            norms.append(torch.nn.utils.clip_grad_norm_(actor.parameters(), max_norm).item())
            optimizer.step()
            losses.append(loss.item())
            clips.append(clip_ratio.item())
            kls.append(kl.item())
    engine.load_weights(actor.model)

    mask = batch.action_mask.bool()
    tasks = [json.loads(r["label"])["task"] for r in responses]
    metrics = {
        "reward": sum(r["reward"] for r in responses) / len(responses),
        "policy_loss": losses[0],
        "clip_ratio": max(clips),
        "kl": kls[-1],
        "grad_norm": norms[0],
        "response_tokens": mask.sum().item() / len(responses),
        "logprob_gap_max": (batch.action_log_probs - batch.rollout_log_probs)[mask].abs().max().item(),
        "zero_std_groups": sum(len({g["reward"] for g in group}) == 1 for group in groups),
        "seconds": time.time() - started,
        "rollout_seconds": rollout_seconds,
    }
    for component in ("format", "iou", "accuracy"):
        values = [r["extra_logs"][component] for r, task in zip(responses, tasks) if component in PRESETS[task]]
        metrics[component] = sum(values) / len(values) if values else None  # no sample of such a task
    return metrics, responses


def step_seed(seed: int, step: int) -> int:
    """The base of step `step`'s per-request sampling seeds in a run seeded `seed` (disjoint ranges)."""
    return (seed * 100_003 + step) * 10_000


def train(
    model_dir,
    rows: list[dict],
    out_dir,
    *,
    steps: int,
    prompts_per_step: int,
    n_samples: int,
    max_new_tokens: int,
    lr: float,
    seed: int = 0,
    updates: int = 1,
    train_batch_size: int | None = None,
    kl_coef: float = 0.0,
    engine=None,
    on_step=None,
):
    """`steps` GRPO steps from `model_dir` on `rows` (VideoPromptDataset rows), drawn in a
    seeded shuffled order. Saves the policy to `out_dir` and every rollout (step, label, response,
    reward) to `out_dir/rollouts.jsonl`; returns (out_dir, per-step metrics). `engine`: an
    InProcessEngine already holding `model_dir`'s weights (else one is started); it ends up
    holding the trained policy. `seed` fixes the prompt order, the sampling of every rollout and
    torch's generator: a rerun on the same machine repeats every step."""
    from openrlhf.models import Actor
    from openrlhf.utils import get_tokenizer

    if n_samples < 2:  # group_norm divides by the std of a one-sample group: NaN weights (OpenRLHF refuses it too)
        raise ValueError(f"n_samples {n_samples}: GRPO compares the samples of a prompt, it needs at least 2")
    torch.manual_seed(seed)
    processor = get_tokenizer(str(model_dir), None)  # what OpenRLHF hands executors: the processor
    engine = engine or InProcessEngine(model_dir, seed=seed)  # first: it applies our patches (Actor forward, M-RoPE)
    actor = Actor(str(model_dir), attn_implementation="sdpa", param_dtype="bf16")
    actor.model.float()  # bf16 backward is ~30x slower on CPU; the weights are bf16-exact anyway
    reference = None
    if kl_coef > 0:  # the frozen starting policy (train_ppo_ray's reference model)
        reference = Actor(str(model_dir), attn_implementation="sdpa", param_dtype="bf16")
        reference.model.float()
        reference.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(actor.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = random.Random(seed)
    queue, history = [], []
    with open(out_dir / "rollouts.jsonl", "w") as log:
        for step in progress(range(1, steps + 1), desc="GRPO steps"):
            if len(queue) < prompts_per_step:
                queue += order.sample(rows, len(rows))
            step_rows, queue = queue[:prompts_per_step], queue[prompts_per_step:]
            metrics, responses = grpo_step(
                actor, optimizer, engine, processor, step_rows, n_samples=n_samples, max_new_tokens=max_new_tokens,
                updates=updates, train_batch_size=train_batch_size, kl_coef=kl_coef, reference=reference,
                seed=step_seed(seed, step),
            )  # fmt: skip
            for r in responses:
                log.write(
                    json.dumps(
                        {
                            "step": step,
                            "label": r["label"],
                            "response": _answer_text(processor, r),
                            "reward": r["reward"],
                        }
                    )
                    + "\n"
                )
            history.append({"step": step, **metrics})
            if on_step:
                on_step(history[-1])
    actor.model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir, history


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) without fixed points (n >= 2): who shows whose video."""
    rng = random.Random(seed)
    while True:
        perm = rng.sample(range(n), n)
        if all(i != p for i, p in enumerate(perm)):
            return perm


def heldout_eval(engine, processor, rows: list[dict], *, max_new_tokens: int, shuffle_seed: int = 0) -> dict:
    """Greedy answers of the engine's policy to held-out `rows`, scored by the rollout's own reward
    (reward_plugins.score), twice: with each row's own video, and with the videos permuted between
    the rows (a seeded derangement): the control that a skill comes from the video. A policy that
    reads the video drops to chance on the shuffled videos; one that gives a constant answer, or
    answers from the question alone, scores the same on both. Per-row lists, in `rows` order."""
    result = {"shuffled": {"accuracy": None, "format": None, "reward": None, "answers": None}}  # one row: no control
    shuffled = [rows[p]["video"] for p in derangement(len(rows), shuffle_seed)] if len(rows) > 1 else None
    for name, videos in (("own", None), ("shuffled", shuffled)):
        if name == "shuffled" and videos is None:
            continue
        responses = [g[0] for g in rollout(engine, processor, rows, 1, max_new_tokens, temperature=0.0, videos=videos)]
        result[name] = {
            component: [r["extra_logs"][component] for r in responses] for component in ("accuracy", "format")
        } | {"reward": [r["reward"] for r in responses], "answers": [_answer_text(processor, r) for r in responses]}
    return result


def _answer_text(processor, response: dict) -> str:
    (start, end), tokens = response["action_ranges"][0], response["observation_tokens"]
    return processor.tokenizer.decode(tokens[start:end], skip_special_tokens=True)


def paired_stats(a: list[float], b: list[float]) -> dict:
    """Mean of a, mean of b, their paired difference, its standard error sd(a_i - b_i)/sqrt(n)
    and z = difference / SE (None when every pair differs by the same amount)."""
    n = len(a)
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / n
    sd = (sum((d - mean) ** 2 for d in diffs) / (n - 1)) ** 0.5 if n > 1 else 0.0
    se = sd / n**0.5
    return {"n": n, "a": sum(a) / n, "b": sum(b) / n, "diff": mean, "se": se, "z": mean / se if se > 0 else None}
