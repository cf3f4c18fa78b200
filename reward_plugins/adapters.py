"""The same rewards for other RL frameworks' reward-function signatures (neither is imported).

verl 0.9:  reward.custom_reward_function.path=.../reward_plugins/adapters.py
           reward.custom_reward_function.name=compute_score
TRL:       GRPOTrainer(..., reward_funcs=[reward_plugins.adapters.trl_reward_func])

Both are tested against the frameworks themselves (tests/test_recipes_*.py; examples/ has a TRL
script and a verl launch). `score()` computes every number; these only unpack the arguments.
"""

from reward_plugins.scoring import COMPONENTS, LABEL_FIELDS, record_label, score, warn_unusable_label


def _think(value) -> bool:
    """A row's `think` setting. None is "not given": a parquet file (verl) or a dataset column (TRL)
    has every row carry the key, set to None where that row had none."""
    return True if value is None else bool(value)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's reward-function signature. `ground_truth` is our label (dict or JSON text);
    `extra_info["think"] = False` selects the no-think format. Returns verl's dict form: `score`
    plus every component under the same keys for every task, as verl stacks them per key.
    `kwargs`: what verl's reward loop adds (`reward_router_address`, ...), unused here."""
    think = _think(extra_info.get("think")) if isinstance(extra_info, dict) else True
    result = score(solution_str, ground_truth, think=think)
    return {"score": result["reward"], **{name: float(result.get(name, 0.0)) for name in COMPONENTS}}


def trl_reward_func(prompts, completions, think=True, log_extra=None, log_metric=None, **kwargs) -> list[float]:
    """TRL's reward-function signature. TRL passes every dataset column as a keyword list:
    the label comes from a `label` column, else from the record's own columns (task, answer,
    options, span, duration, and clip, which puts the span on the clip's time axis as in
    training: `record_label`). Completions are strings or, in conversational datasets, lists of
    messages whose last one is the reply (its content a string or a list of text parts).
    TRL (1.x) also passes `log_extra` and `log_metric`: the components (format, iou, accuracy) go
    to its completions table per completion and to its metrics as `reward_plugins/<name>` means."""
    results = []
    for index, completion in enumerate(completions):
        if "label" in kwargs:
            label = kwargs["label"][index]
        else:
            try:
                label = record_label({name: kwargs[name][index] for name in (*LABEL_FIELDS, "clip") if name in kwargs})
            except ValueError as error:  # a reward never raises into the trainer: logged as score logs it
                warn_unusable_label(error)
                results.append({"reward": 0.0})
                continue
        if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
            completion = completion[-1]["content"] if completion else ""
        if isinstance(completion, list):  # multimodal content: [{"type": "text", "text": ...}]
            completion = "".join(part.get("text", "") for part in completion)
        think_here = think[index] if isinstance(think, list) else think
        results.append(score(completion, label, think=_think(think_here)))
    for name in COMPONENTS:  # a task's missing component is None in the table, left out of the mean
        values = [float(result[name]) if name in result else None for result in results]
        if callable(log_extra):
            log_extra(name, values)
        present = [value for value in values if value is not None]
        if callable(log_metric) and present:
            log_metric(f"reward_plugins/{name}", sum(present) / len(present))
    return [result["reward"] for result in results]
