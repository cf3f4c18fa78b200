"""Run by tests/test_recipes_verl.py with .venv-verl's Python (verl 0.9.1): verl's own reward path
scores batches and the results come back as JSON. Not a test module (pytest collects test_*.py).

    .venv-verl/bin/python tests/verl_reward_loop.py SPEC.json OUT.json

SPEC: {"config_dir", "config_name", "overrides": [...] (the test's, on top of the example config),
"adapters_file", "batches": [{"parquet", "responses": [one per row after rollout.n repeats]}]}.

What runs is what verl's PPO trainer runs (verl/trainer/ppo/ray_trainer.py, fit): the config
composed by Hydra from verl's defaults and the example file; the batch from parquet through verl's
RLHFDataset and collate_fn, repeated rollout.n times, with the responses laid out as its agent loop
lays them out (prompts left-padded, responses right-padded, eos at the end); the reward from
RewardLoopManager.compute_rm_score (Ray actors of RewardLoopWorker, each loading the custom reward
function and calling it through the `naive` reward manager, the outputs stacked per key); then
extract_reward. The same batch also goes through `load_reward_manager` with the function given
as a file path (`custom_reward_function.path=.../adapters.py`) instead of the example's
`pkg://` module path, row by row as a RewardLoopWorker does.
"""

import json
import os
import sys
from importlib.metadata import version


def compose(config_dir: str, config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name, overrides=overrides)


def rollout_batch(config, tokenizer, parquet: str, responses: list[str]):
    """The training batch after rollout: the dataset's rows repeated rollout.n times, united with
    the generated sequences as the agent loop returns them."""
    import torch
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(parquet, tokenizer, config.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    batch = batch.repeat(repeat_times=config.actor_rollout_ref.rollout.n, interleave=True)
    assert len(responses) == len(batch), (len(responses), len(batch))
    prompt_ids = [
        list(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        for messages in batch.non_tensor_batch["raw_prompt"]
    ]  # fmt: skip
    response_ids = [tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id] for text in responses]
    prompt_len, response_len, pad = max(map(len, prompt_ids)), max(map(len, response_ids)), tokenizer.pad_token_id
    prompts = torch.tensor([[pad] * (prompt_len - len(ids)) + ids for ids in prompt_ids])
    outputs = torch.tensor([ids + [pad] * (response_len - len(ids)) for ids in response_ids])
    prompt_mask = torch.tensor([[0] * (prompt_len - len(ids)) + [1] * len(ids) for ids in prompt_ids])
    response_mask = torch.tensor([[1] * len(ids) + [0] * (response_len - len(ids)) for ids in response_ids])
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    generated = DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": outputs,
            "response_mask": response_mask,
            "input_ids": torch.cat([prompts, outputs], dim=1),
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
        }
    )
    return batch.union(generated)


def start_ray(num_cpus: int, attempts: int = 3) -> None:
    """ray.init, retried. Ray 2.55's raylet gives the dashboard agent a fixed 15 s to write its port
    file and aborts when the agent takes longer to start (a loaded machine: seen in CI); ray.init
    then fails with "The current node timed out during startup". A new cluster usually starts."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
            return
        except Exception as error:
            ray.shutdown()
            if attempt == attempts:
                raise
            print(f"ray.init failed ({error}); starting a new cluster ({attempt}/{attempts - 1})", file=sys.stderr)


def main(spec_path: str, out_path: str) -> None:
    import numpy as np
    import ray
    from verl.experimental.reward_loop import RewardLoopManager
    from verl.trainer.ppo.reward import extract_reward, load_reward_manager
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils import hf_tokenizer
    from verl.utils.config import validate_config
    from verl.utils.ray_utils import get_event_loop

    with open(spec_path) as f:
        spec = json.load(f)
    result = {"batches": [], "versions": {name: version(name) for name in ("verl", "transformers", "ray", "torch")}}

    # The example config as a researcher launches it (only the model named): verl's main_ppo checks.
    example = compose(spec["config_dir"], spec["config_name"], spec["example_overrides"])
    validate_config(example, use_reference_policy=need_reference_policy(example), use_critic=need_critic(example))
    result["example_reward"] = {key: example.reward.custom_reward_function[key] for key in ("path", "name")}

    config = compose(spec["config_dir"], spec["config_name"], spec["example_overrides"] + spec["overrides"])
    file_config = compose(
        spec["config_dir"],
        spec["config_name"],
        spec["example_overrides"] + spec["overrides"] + [f"reward.custom_reward_function.path={spec['adapters_file']}"],
    )
    tokenizer = hf_tokenizer(config.actor_rollout_ref.model.path)

    start_ray(num_cpus=config.reward.num_workers)
    try:
        manager = RewardLoopManager(config)
        by_file = load_reward_manager(file_config, tokenizer)  # what each RewardLoopWorker builds
        loop = get_event_loop()
        for case in spec["batches"]:
            batch = rollout_batch(config, tokenizer, case["parquet"], case["responses"])
            batch = batch.union(manager.compute_rm_score(batch))
            reward_tensor, extras = extract_reward(batch)
            rows = [loop.run_until_complete(by_file.run_single(batch[i : i + 1])) for i in range(len(batch))]
            result["batches"].append({
                "scores": reward_tensor.sum(dim=-1).tolist(),
                "scored_tokens": (reward_tensor != 0).sum(dim=-1).tolist(),
                "extra_keys": list(batch.meta_info["reward_extra_keys"]),
                "extras": {key: np.asarray(values).tolist() for key, values in extras.items()},
                "data_sources": batch.non_tensor_batch["data_source"].tolist(),
                "file_path": {
                    "scores": [row["reward_score"] for row in rows],
                    "extras": [row["reward_extra_info"] for row in rows],
                },
            })  # fmt: skip
    finally:
        ray.shutdown()
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*sys.argv[1:3])
