"""Model families: everything the pipeline needs to know about one kind of video LLM, behind one
interface, one small module per family (as vLLM's `model_executor/models/`). The pipeline asks the
family (`for_model`, `for_processor`, `get`), never tests its name.

A family says
- `vision_tokens`: the special tokens only the processor may place (banned in sampling);
- `train_inputs(processor_output)`: what the training forward needs from the HF processor's
  output besides the prompt ids (the `mm_train_inputs` OpenRLHF carries to `Actor.forward`);
- `think_opened_by_template`: whether its chat template's generation prompt already opens
  `<think>` (the R1 format then starts inside the thinking);
- `vllm_dtype`: the dtype its rollout engine runs in on this CPU build;
- `patches()`: the functions of `openrlhf_video.patches` it needs (applied by `patches.apply`);
- `positions_as_rolled_out(model)`: makes one HF model compute the positions vLLM rolls out with,
  without patching its class (the warm start, outside the training processes);
- `build_tiny(out_dir, seed)`: its offline tiny model (`openrlhf_video.tiny_model.build_tiny_model`).
"""

import json
from pathlib import Path

from openrlhf_video.tiny_model import VISION_TOKENS


class Family:
    name: str  # also lmms-eval's model class for it
    model_types: tuple[str, ...]  # config.json's `model_type`
    processor_class: str  # the HF processor class its checkpoints ship
    tiny_name: str  # its tiny model's cache directory and fixture stamp
    tiny_version: int  # bump when its tiny model changes (the cached build is then rebuilt)
    vision_tokens = tuple(VISION_TOKENS)
    think_opened_by_template = False
    vllm_dtype = "float32"

    def train_inputs(self, processor_output) -> dict:
        raise NotImplementedError

    def patches(self) -> list:
        return []

    def positions_as_rolled_out(self, model) -> None:
        """Nothing to do where transformers and vLLM agree on positions."""

    def build_tiny(self, out_dir: Path, seed: int) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<model family {self.name}>"


def _registry() -> dict[str, Family]:
    from openrlhf_video.families import qwen2_5_vl, qwen3_5, qwen3_vl

    return {family.name: family for family in (qwen2_5_vl.FAMILY, qwen3_vl.FAMILY, qwen3_5.FAMILY)}


def names() -> list[str]:
    return list(_registry())


def all_families() -> list[Family]:
    return list(_registry().values())


def get(name: str) -> Family:
    try:
        return _registry()[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; supported: {', '.join(names())}") from None


def for_model(model_dir) -> Family:
    """The family of a checkpoint directory, from its config.json's `model_type`."""
    model_type = json.loads((Path(model_dir) / "config.json").read_text())["model_type"]
    for family in _registry().values():
        if model_type in family.model_types:
            return family
    raise ValueError(f"{model_dir}: model_type {model_type!r} is no supported family ({', '.join(names())})")


def for_processor(processor) -> Family:
    """The family whose processing a loaded HF processor does (the executor gets only the processor).
    Qwen3.5 ships Qwen3-VL's processor and processes videos as Qwen3-VL does: Qwen3-VL answers."""
    for family in _registry().values():
        if type(processor).__name__ == family.processor_class:
            return family
    raise ValueError(f"{type(processor).__name__}: no supported family processes with it ({', '.join(names())})")
