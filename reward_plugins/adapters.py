"""The same rewards for other RL frameworks' reward-function signatures (neither is imported).

verl:  custom_reward_function.path=.../reward_plugins/adapters.py  custom_reward_function.name=compute_score
TRL:   GRPOTrainer(..., reward_funcs=[reward_plugins.adapters.trl_reward_func])
"""

from reward_plugins.scoring import COMPONENTS, LABEL_FIELDS, logger, record_label, score


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's reward-function signature. `ground_truth` is our label (dict or JSON text);
    `extra_info["think"] = False` selects the no-think format. Returns verl's dict form: `score`
    plus every component under the same keys for every task, as verl stacks them per key.
    `kwargs`: what verl's reward loop adds (`reward_router_address`, ...), unused here."""
    think = (extra_info or {}).get("think", True) if isinstance(extra_info, dict) else True
    result = score(solution_str, ground_truth, think=think)
    return {"score": result["reward"], **{name: float(result.get(name, 0.0)) for name in COMPONENTS}}


def trl_reward_func(prompts, completions, think=True, **kwargs) -> list[float]:
    """TRL's reward-function signature. TRL passes every dataset column as a keyword list:
    the label comes from a `label` column, else from the record's own columns (task, answer,
    options, span, duration, and clip, which puts the span on the clip's time axis as in
    training: `record_label`). Completions are strings or, in conversational datasets, lists of
    messages whose last one is the reply (its content a string or a list of text parts)."""
    rewards = []
    for index, completion in enumerate(completions):
        if "label" in kwargs:
            label = kwargs["label"][index]
        else:
            try:
                label = record_label({name: kwargs[name][index] for name in (*LABEL_FIELDS, "clip") if name in kwargs})
            except ValueError as error:  # a reward never raises into the trainer: logged as score logs it
                logger.warning("reward 0 for an unusable label: %s", error)
                rewards.append(0.0)
                continue
        if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
            completion = completion[-1]["content"] if completion else ""
        if isinstance(completion, list):  # multimodal content: [{"type": "text", "text": ...}]
            completion = "".join(part.get("text", "") for part in completion)
        think_here = think[index] if isinstance(think, list) else think
        rewards.append(score(completion, label, think=think_here)["reward"])
    return rewards
