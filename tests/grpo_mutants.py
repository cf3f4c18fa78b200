"""`python tests/grpo_mutants.py MUTANT demo ...`: the `openrlhf-video` CLI with one bug planted in
GRPO, so that tests/test_learning.py can be shown to fail on it (OPENRLHF_VIDEO_TEST_MUTANT).

- negate: every advantage's sign flipped (rewarded answers made less likely);
- zero: every advantage 0 (the update carries only the KL term);
- misalign: the training forward of each sample gets the video of a sample half a batch away
  (another prompt's: groups are consecutive), as a batching bug would pair them.
"""

import sys

import torch
from openrlhf.trainer.ppo_utils.experience import Experience
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker


def plant(mutant: str) -> None:
    if mutant in ("negate", "zero"):
        advantages = RemoteExperienceMaker.compute_advantages_and_returns

        def mutated(self, experiences, **kwargs):
            experiences = advantages(self, experiences, **kwargs)
            for experience in experiences:
                experience.advantages = (
                    -experience.advantages if mutant == "negate" else torch.zeros_like(experience.advantages)
                )
            return experiences

        RemoteExperienceMaker.compute_advantages_and_returns = mutated
    elif mutant == "misalign":
        concat = Experience.concat_experiences

        def misaligned(experiences, pad_token_id):
            batch = concat(experiences, pad_token_id)
            half = len(batch.mm_train_inputs) // 2
            batch.mm_train_inputs = batch.mm_train_inputs[half:] + batch.mm_train_inputs[:half]
            return batch

        Experience.concat_experiences = staticmethod(misaligned)
    else:
        raise SystemExit(f"grpo_mutants.py: unknown mutant {mutant!r}; expected negate, zero or misalign")


if __name__ == "__main__":
    plant(sys.argv[1])
    from openrlhf_video import cli

    sys.exit(cli.main(sys.argv[2:]))
