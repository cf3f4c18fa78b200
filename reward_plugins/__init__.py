"""reward_plugins: the Temporal-R1 dual reward (discrete answers, continuous temporal IoU, format).

One entry, `score(response, label, think=True, **weights)`, for the tasks tvg, mcq, oeqa and gqa;
the parsers below are the same code the lmms-eval metrics use. Default weights (PRESETS):

    tvg   0.5 iou + 0.5 format                      (Temporal-R1's grounding reward)
    mcq   0.5 accuracy + 0.5 format
    oeqa  0.5 accuracy + 0.5 format
    gqa   0.25 accuracy + 0.25 iou + 0.5 format

Delivered to trainers as: `reward_plugins/openrlhf_reward.py` (OpenRLHF `--reward.remote_url`),
`openrlhf-video serve-reward` (HTTP, OpenRLHF's remote-reward protocol), and
`reward_plugins.adapters` (verl `compute_score`, TRL `trl_reward_func`).
Pure Python: importing this package pulls in no torch or numpy.
"""

from reward_plugins.parsing import answer_region, has_format, normalize_answer, parse_choice, parse_span, temporal_iou
from reward_plugins.scoring import PRESETS, parse_label, record_label, score

__all__ = [
    "PRESETS",
    "answer_region",
    "has_format",
    "normalize_answer",
    "parse_choice",
    "parse_label",
    "parse_span",
    "record_label",
    "score",
    "temporal_iou",
]
