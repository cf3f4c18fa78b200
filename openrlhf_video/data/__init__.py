"""openrlhf_video.data: records from every source, the data config, frames, prompts, OpenRLHF rows.

`frames` needs the decoding stack (numpy, qwen-vl-utils, decord or PyAV) and is imported from
its own module: `from openrlhf_video.data.frames import load_frames, VideoFrames`.
"""

from openrlhf_video.data.prompts import VideoPromptDataset, build_messages, label_json, render_prompt
from openrlhf_video.data.records import (
    FORMATS,
    TASKS,
    DataError,
    Skips,
    load_config,
    read_records,
    validate_record,
)

__all__ = [
    "FORMATS",
    "TASKS",
    "DataError",
    "Skips",
    "VideoPromptDataset",
    "build_messages",
    "label_json",
    "load_config",
    "read_records",
    "render_prompt",
    "validate_record",
]
