"""A tiny random Qwen2.5-VL built offline: the model the tests and the CPU demo run.

Nothing is downloaded. The tokenizer is a byte-level BPE trained here on a small corpus, wrapped
as Qwen2Tokenizer with Qwen's special tokens (in Qwen's order) and the Qwen2-VL chat template; the
model is a real `Qwen2_5_VLForConditionalGeneration` with dimensions vLLM's CPU backend accepts
(text head_dim 64, see shared/ENVIRONMENT.md). Built once per (builder version, seed) and cached.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

BUILDER_VERSION = 1
FIXTURES = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openrlhf-video" / "fixtures"

# Qwen2.5-VL's special tokens in Qwen's id order (151643...), here placed right after the BPE vocab.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Tokens that only the processor may place: sampled as text they break the next forward
# ("video features and video tokens do not match"), and a random model does sample them.
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# How the Qwen chat templates write a message's content list: images and videos as their vision
# tokens (optionally numbered), text as is. Shared by Qwen2-VL's template and Qwen3-VL's.
CONTENT_ITEMS = (
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
)
# Qwen2-VL's chat template (as shipped with Qwen2.5-VL-*-Instruct).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}" + CONTENT_ITEMS + "<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

BPE_VOCAB_SIZE = 500  # a cap: 256 byte symbols + the ~210 merges this small corpus yields
# What the tiny model reads and writes in tests and the demo: prompts, tags, colours, times.
CORPUS = [
    "You are a helpful assistant.",
    "<think> Let me watch the video carefully. </think> <answer> B </answer>",
    "<think>The red square appears after the start.</think><answer>2.5 to 7.0</answer>",
    "When does the red square appear? Give the start and end time in seconds.",
    "Which colour is the square that appears in the video? Answer with the option's letter.",
    "What colour is the square? Answer with one word. The event happens from 1.2 to 4.8 seconds.",
    "A. red B. green C. blue D. yellow E. purple F. cyan G. white H. orange",
    "Output the thinking process in <think> </think> and the final answer in <answer> </answer> tags.",
    "The person opens the door, then walks to the table and sits down. 0 1 2 3 4 5 6 7 8 9 10 11 12",
]


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the vision special tokens, to forbid in sampling (HF `bad_words_ids`/`suppress_tokens`,
    vLLM `allowed_token_ids` = the rest)."""
    return tokenizer.convert_tokens_to_ids(VISION_TOKENS)


def build_tokenizer(special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, added_tokens=()):
    """The tiny byte-level BPE as a Qwen2Tokenizer with `special_tokens` after its vocabulary (in that
    order) and `added_tokens` as plain added tokens (Qwen3's `<think>`, ...), plus the chat template."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Same normalizer and pre-tokenizer as Qwen2Tokenizer, so the learned merges apply unchanged.
    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(CORPUS * 4, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab = dict(trained["vocab"])
    vocab.update({token: len(vocab) + i for i, token in enumerate([*special_tokens, *added_tokens])})
    result = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in trained["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    result.add_tokens([AddedToken(token, special=True, normalized=False) for token in special_tokens])
    result.add_tokens([AddedToken(token, special=False, normalized=False) for token in added_tokens])
    result.chat_template = chat_template
    return result


def round_to_bf16(model) -> None:
    """Weights stored fp32 but exactly representable in bf16: OpenRLHF's Actor loads bf16, the CPU vLLM
    engine fp32; with rounded weights both compute with identical values (parity tests)."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.to(torch.bfloat16).float())


# Qwen2.5-VL shapes. "test": what the tests and the rehearsal need (~0.7 M parameters; fast).
# "learn": `demo --learn`, a language model wide and deep enough to learn to read the video.
# Every text head_dim is 64 and vision out_hidden_size equals the text width (vLLM's CPU backend).
SIZES = {
    "test": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1),
    "learn": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2),
}  # fmt: skip


def save_random_model(model_class, config, ids: dict, seed: int, out_dir: Path) -> None:
    """A seeded random `model_class(config)`, bf16-exact, whose generation ends at <|im_end|>, saved."""
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    model = model_class(config).eval()
    round_to_bf16(model)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out_dir)


def _build(out_dir: Path, seed: int, size: str = "test") -> None:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = build_tokenizer()
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)))
    text = dict(
        vocab_size=len(tokenizer), **SIZES[size], max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 8, 8]},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )  # fmt: skip
    vision = dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=SIZES[size]["hidden_size"], patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
    )  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    save_random_model(Qwen2_5_VLForConditionalGeneration, config, ids, seed, out_dir)

    # Small frames keep video token counts low (the synthetic clips are 160x96): 4-64 merged tokens
    # per frame pair. Same processor class and keys as the real checkpoints.
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28),
        video_processor=Qwen2VLVideoProcessor(
            min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28, cap_pixels_per_frame=False
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)


def build_tiny_model(family: str = "qwen2_5_vl", out_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Build (or reuse) the tiny model of a supported family (`qwen2_5_vl`, `qwen3_vl`, `qwen3_5`);
    returns the directory for `from_pretrained` / vLLM / OpenRLHF's Actor.

    Default location: ~/.cache/openrlhf-video/fixtures/tiny-<family's tiny_name>-v<version>-seed<seed>.
    Safe under concurrent builders: each writes a private temp dir and renames it into place.
    """
    from openrlhf_video import families

    spec = families.get(family)
    version = spec.tiny_version
    out_dir = Path(out_dir) if out_dir else FIXTURES / f"tiny-{spec.tiny_name}-v{version}-seed{seed}"
    stamp = {"builder": f"tiny_{spec.tiny_name}", "version": version, "seed": seed}

    def is_built() -> bool:
        try:
            return json.loads((out_dir / "fixture.json").read_text()) == stamp
        except (OSError, ValueError):
            return False

    if is_built():
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not a tiny {spec.name} (seed {seed}, builder v{version})")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        spec.build_tiny(tmp, seed)
        (tmp / "fixture.json").write_text(json.dumps(stamp))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any model directory
        try:
            os.rename(tmp, out_dir)  # atomic; replaces only an empty directory
        except OSError:
            if not is_built():  # a concurrent builder won the race: use its (identical) result
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def build_tiny_qwen25vl(out_dir: str | os.PathLike | None = None, seed: int = 0, size: str = "test") -> Path:
    """The tiny Qwen2.5-VL (`build_tiny_model("qwen2_5_vl")`), under its name from before families;
    `size` one of `SIZES` (the "learn" size in a directory of its own)."""
    if size == "test":
        return build_tiny_model("qwen2_5_vl", out_dir, seed)
    if size not in SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; expected one of {sorted(SIZES)}")
    out_dir = Path(out_dir) if out_dir else FIXTURES / f"tiny-qwen25vl-v{BUILDER_VERSION}-seed{seed}-{size}"
    if not (out_dir / "config.json").is_file():  # one builder at a time: the demo builds it once
        out_dir.mkdir(parents=True, exist_ok=True)
        _build(out_dir, seed, size)
    return out_dir
