"""One GRPO update on CPU from OpenRLHF 0.11.2's own pieces (its Experience and advantage code with
group_norm, PolicyLoss, Actor) on a group of our executor's video rollouts."""

import copy
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch

# The engine / actor fixtures and rollout helpers of test_rollout.py (tests/ is no package).
_spec = importlib.util.spec_from_file_location("rollout_tests", Path(__file__).with_name("test_rollout.py"))
rollout_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rollout_tests)
engine, processor, actor, rows = rollout_tests.engine, rollout_tests.processor, rollout_tests.actor, rollout_tests.rows

N = 8  # Temporal-R1's group size


def test_one_grpo_update_on_video_rollouts_lowers_the_loss(engine, processor, actor, rows, tiny_model_dir):
    from openrlhf.models import PolicyLoss
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.utils.vlm_utils import merge_mm_train_inputs

    from openrlhf_video.train import build, openrlhf_args

    # OpenRLHF's own parser and checks give every setting the advantage code reads.
    argv, _ = build([
        "--actor.model_name_or_path", str(tiny_model_dir), "--vllm.num_engines", "1",
        "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", str(N),
        "--rollout.batch_size", "1", "--rollout.micro_batch_size", str(N), "--algo.kl.init_coef", "0",
        "--actor.num_gpus_per_node", "1",
    ])  # fmt: skip
    args = openrlhf_args(argv)

    responses = rollout_tests.rollout(engine, processor, rows["synthetic/clip_003#tvg"], n=N, max_tokens=16)
    # A random tiny policy never writes the <answer> format, so every real reward is 0 and
    # group_norm's advantages vanish. Give the group a spread (the update itself is what is tested).
    assert {r["reward"] for r in responses} <= {0.0}
    for i, response in enumerate(responses):
        response["reward"] = i / (N - 1)

    samples = [
        SamplesGenerator._process_response_into_experience(None, r, max_len=args.data.max_len) for r in responses
    ]
    maker = RemoteExperienceMaker.__new__(RemoteExperienceMaker)  # its Ray model groups are not needed
    maker.strategy, maker.args, maker.tokenizer = SimpleNamespace(args=args), args, processor
    maker.advantage_estimator, maker.kl_ctl = args.algo.advantage.estimator, FixedKLController(0.0)
    (batch,) = maker.split_rollout_samples(samples)

    policy = copy.deepcopy(actor)  # the module's actor stays the engine's twin for other tests
    mm = merge_mm_train_inputs(batch.mm_train_inputs, "cpu")

    def policy_log_probs():
        return policy(batch.sequences, batch.action_mask, batch.attention_mask, **mm)

    with torch.no_grad():
        batch.action_log_probs = policy_log_probs()
    batch.kl = torch.zeros_like(batch.action_log_probs)
    (batch,) = maker.compute_advantages_and_returns([batch])
    # group_norm: one value per sample, on each of its tokens (replies differ in length)
    advantages = (batch.advantages * batch.action_mask).sum(-1) / batch.action_mask.sum(-1)
    assert advantages.argsort().tolist() == list(range(N)) and abs(advantages.mean()) < 1e-5

    loss_fn = PolicyLoss(clip_eps_low=args.actor.eps_clip_low_high[0], clip_eps_high=args.actor.eps_clip_low_high[1])

    def loss():
        return loss_fn(policy_log_probs(), batch.action_log_probs, batch.advantages, action_mask=batch.action_mask)[0]

    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    first = loss()
    first.backward()
    optimizer.step()
    with torch.no_grad():
        second = loss()

    assert second < first - 1e-3
    changed = {name for name, p in policy.named_parameters() if not torch.equal(p, before[name])}
    assert any(".visual." in f".{name}" for name in changed)  # the vision tower learns too
    assert any("language_model" in name for name in changed)
