"""The training run's own rollout path on CPU: Ray started as `openrlhf-video train` starts it,
OpenRLHF's RolloutRayActor (AsyncLLM) loading our executor by path, one prompt group through
`generate_responses`, then OpenRLHF's Experience code and Actor on the results.

Slow (~100 s: vLLM's AsyncLLM always runs its engine in a separate process, ~70 s to start here),
and the only test that covers patches delivered to Ray workers, by value and by the setup hook.
"""

import json

import pytest
import ray
import torch
from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

from openrlhf_video import patches
from openrlhf_video.train import ROLLOUT_FILE, init_ray

MIN_STD = "0.05"


@pytest.fixture(scope="module")
def cluster():
    patches.apply()  # in the driver, as `openrlhf-video train` does
    # Started as a `ray job submit --runtime-env-json` job that names the setup hook and an env var
    # we set too, which Ray refuses to merge with ray.init's runtime env unless told (init_ray).
    job = {"runtime_env": {"worker_process_setup_hook": patches.SETUP_HOOK, "env_vars": {"NCCL_DEBUG": "INFO"}}}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, json.dumps(job))
        env.delenv("RAY_OVERRIDE_JOB_RUNTIME_ENV", raising=False)  # restored on exit
        init_ray(
            {"VLLM_CPU_KVCACHE_SPACE": "1", patches.MIN_REWARD_STD_ENV: MIN_STD}, num_cpus=2, include_dashboard=False
        )
    yield
    ray.shutdown()


def test_patches_reach_ray_workers_through_the_setup_hook(cluster):
    @ray.remote
    def patched_in_worker():
        import os

        from openrlhf.models import Actor
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

        from openrlhf_video import patches as worker_patches

        return (
            Qwen2_5_VLModel.get_rope_index is worker_patches.qwen25vl_get_rope_index,
            Actor.forward is not worker_patches.UPSTREAM.get("Actor.forward", Actor.forward),
            os.environ.get(worker_patches.MIN_REWARD_STD_ENV),
        )

    assert ray.get(patched_in_worker.remote(), timeout=300) == (True, True, MIN_STD)


def test_a_group_through_openrlhfs_rollout_actor_matches_training(cluster, tiny_model_dir, synthetic_data):
    from openrlhf.models import Actor
    from openrlhf.trainer.ray.vllm_engine import RolloutRayActor
    from openrlhf.utils import get_tokenizer
    from vllm import SamplingParams

    from openrlhf_video.data import VideoPromptDataset, read_records

    processor = get_tokenizer(str(tiny_model_dir), None)
    records = read_records(synthetic_data / "records.jsonl")
    row = next(
        r for r in VideoPromptDataset(records[:4], processor, video_root=synthetic_data) if r["id"].endswith("#tvg")
    )

    # create_vllm_engines' arguments for one engine, minus the GPU placement
    engine = RolloutRayActor.options(num_cpus=1, num_gpus=0).remote(
        model=str(tiny_model_dir), dtype="float32", enforce_eager=True, max_model_len=2048, seed=0, num_gpus=0,
        trust_remote_code=True, worker_extension_cls="openrlhf.trainer.ray.vllm_worker_wrap.WorkerWrap",
        agent_func_path=ROLLOUT_FILE, remote_rm_url=None, mm_pad_token_ids=set(),
    )  # fmt: skip
    limits = ray.get(
        engine.__ray_call__.remote(lambda actor: actor.llm.model_config.multimodal_config.limit_per_prompt)
    )
    assert limits["video"].count == 1  # the patched __init__ ran in the Ray actor

    params = SamplingParams(temperature=1.0, max_tokens=32, logprobs=1, skip_special_tokens=False)
    responses = ray.get(
        engine.generate_responses.remote(prompt=row["prompt"], label=row["label"], sampling_params=params,
                                         max_length=2048, hf_tokenizer=processor, num_samples=4, images=row["video"]),
        timeout=600,
    )  # fmt: skip
    assert len(responses) == 4
    std = torch.tensor([r["reward"] for r in responses]).std().item()
    assert all(r["scores"] == pytest.approx(std) and "group_reward_std" in r["extra_logs"] for r in responses)

    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.utils.vlm_utils import merge_mm_train_inputs

    actor = Actor(str(tiny_model_dir), attn_implementation="sdpa", param_dtype="bf16")
    actor.model.float()
    samples = [SamplesGenerator._process_response_into_experience(None, r, max_len=2048) for r in responses]
    batch = Experience.concat_experiences(samples, processor.pad_token_id)
    with torch.no_grad():
        log_probs = actor.eval()(batch.sequences, batch.action_mask, batch.attention_mask,
                                 **merge_mm_train_inputs(batch.mm_train_inputs, "cpu"))  # fmt: skip
    mask = batch.action_mask.bool()
    assert (log_probs[mask] - batch.rollout_log_probs[mask]).abs().max() <= 1e-4

    ray.get(engine.reset_prefix_cache.remote())  # the patched reset: AsyncLLM's encoder + prefix caches
