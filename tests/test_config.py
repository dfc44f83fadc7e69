"""Config validation: every bad value is a one-line error naming the key."""

import re

import pytest

from lidr.config import ConfigError, demo_config, diff_configs, load_config, parse_config

BASE = {"prompts": [{"path": "p/{lang}.jsonl"}]}


def cfg(**over):
    return parse_config({**BASE, **over})


def test_defaults_follow_the_paper():
    c = cfg()
    assert c.dominant_language == "en" and c.languages == ["es", "fr", "de"]
    assert (c.training.beta, c.training.alpha, c.training.warmup_ratio) == (0.1, 1.0, 0.03)
    assert c.training.lr_scheduler == "cosine"
    assert c.generation.temperature == 0.0 and c.generation.repetition_penalty == 1.1


@pytest.mark.parametrize(
    "over, key, words",
    [
        ({"training": {"beta": -1}}, "training.beta", "greater than 0"),
        ({"training": {"warmup_ratio": 1.5}}, "training.warmup_ratio", "less than 1"),
        ({"generation": {"top_p": 0}}, "generation.top_p", "greater than 0"),
        ({"generation": {"batch_size": 0}}, "generation.batch_size", "greater than or equal to 1"),
        ({"training": {"betta": 0.1}}, "training.betta", "unknown key"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"languages": ["es", "xx"]}, "languages", "unknown language code 'xx'"),
        ({"languages": ["en", "es"]}, "(top level)", "dominant language"),
        ({"dominant_language": "zz"}, "dominant_language", "unknown language code 'zz'"),
        ({"iterations": 3, "prompts": [{"path": "a/{lang}.jsonl"}, {"path": "b/{lang}.jsonl"}]},
         "(top level)", "2 blocks for 3 iterations"),
        ({"prompts": [{"path": "no-placeholder.jsonl"}]}, "prompts.0", "must contain {lang}"),
        ({"prompts": [{"path": "a/{lang}.jsonl", "hub": "x/y"}]}, "prompts.0", "exactly one of"),
        ({"generation": {"task_template": "Answer in {language}"}}, "generation.task_template", "{prompt}"),
    ],
)
def test_bad_values_name_the_key(over, key, words):
    with pytest.raises(ConfigError) as err:
        cfg(**over)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{key}:" in msg and words in msg


def test_paths_must_cover_every_language():
    with pytest.raises(ConfigError, match=r"paths has no file for \['fr', 'de'\]"):
        cfg(prompts=[{"paths": {"en": "a.jsonl", "es": "b.jsonl"}}])


def test_a_prompt_block_may_mix_sources():
    c = cfg(prompts=[{"mix": [{"path": "arith/{lang}.jsonl", "text_key": "question", "task": "math"},
                              {"path": "alpagasus/{lang}.jsonl", "limit": 100, "max_new_tokens": 256}]}])
    block = c.prompts_for(1)
    assert [(s.path, s.task, s.limit, s.max_new_tokens) for s in block.sources] == [
        ("arith/{lang}.jsonl", "math", None, None), ("alpagasus/{lang}.jsonl", "instruction", 100, 256)]
    assert parse_config(c.model_dump(mode="json")) == c  # what a run saves reads back the same


@pytest.mark.parametrize("block, key, words", [
    ({"mix": [{"path": "a/{lang}.jsonl"}]}, "prompts.0.mix", "at least 2 items"),
    ({"mix": [{"path": "a/{lang}.jsonl"}, {"path": "b/{lang}.jsonl", "limt": 3}]}, "prompts.0.mix.1.limt", "unknown key"),
    ({"mix": [{"path": "a/{lang}.jsonl"}, {"paths": {"en": "b.jsonl"}}]}, "prompts[0].mix[1].paths",
     "no file for ['es', 'fr', 'de']"),
    ({"path": "a.jsonl"}, "prompts.0", "must contain {lang}"),
    ({"mix": [{"path": "a/{lang}.jsonl"}, {"path": "b/{lang}.jsonl", "max_new_tokens": 0}]},
     "prompts.0.mix.1.max_new_tokens", "greater than or equal to 1"),
])
def test_bad_prompt_blocks_name_the_key(block, key, words):
    with pytest.raises(ConfigError) as err:
        cfg(prompts=[block])
    msg = str(err.value)
    assert f"{key}" in msg and words in msg and "\n" not in msg
    assert ".source." not in msg and "mix.mix" not in msg  # the union's tags are not keys


def test_a_source_may_set_its_number_of_answers():
    """Word problems with three answers for the agreement gate, instructions with one."""
    mix = {"mix": [{"path": "arith/{lang}.jsonl", "task": "math", "samples": 3}, {"path": "alpagasus/{lang}.jsonl"}]}
    c = cfg(prompts=[mix], generation={"sample_temperature": 0.7}, pairs={"gates": {"agreement": 2}})
    assert [s.samples for s in c.prompts_for(1).sources] == [3, None] and c.max_samples == 3
    with pytest.raises(ConfigError, match=r"agreement 2 .* but prompts.0.mix.0.samples is 1; set samples to at "
                                          r"least 2"):
        cfg(prompts=[{"mix": [{**mix["mix"][0], "samples": 1}, mix["mix"][1]]}], generation={"samples": 3,
            "sample_temperature": 0.7}, pairs={"gates": {"agreement": 2}})
    with pytest.raises(ConfigError, match=r"prompts.0.mix.0.samples: 3 greedy answers to one prompt are the same"):
        cfg(prompts=[mix])
    with pytest.raises(ConfigError, match=r"prompts.0.mix.1.samples.*greater than or equal to 1"):
        cfg(prompts=[{"mix": [mix["mix"][0], {"path": "b/{lang}.jsonl", "samples": 0}]}],
            generation={"sample_temperature": 0.7})


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("prompts:\n  - path: data/{lang}.jsonl\ntraining:\n  beta: 0.2\n", encoding="utf-8")
    c, base = load_config(good)
    assert c.training.beta == 0.2 and base == tmp_path.resolve()


def test_set_overrides_change_the_named_settings_only(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("prompts:\n  - path: data/{lang}.jsonl\ntraining:\n  beta: 0.2\n"
                    "evaluation:\n  tasks:\n    - {task: mgsm, data: [\"d/{lang}.jsonl\"], limit: 5}\n", encoding="utf-8")
    base, _ = load_config(path)
    c, _ = load_config(path, ["training.seed=43", "training.learning_rate=2e-4", "training.lora.enabled=true",
                              "languages=[es, de]", "evaluation.tasks.0.limit=9", "pairs.gates.length_ratio=null"])
    assert (c.training.seed, c.training.learning_rate, c.training.lora.enabled) == (43, 2e-4, True)
    assert c.languages == ["es", "de"] and c.evaluation.tasks[0].limit == 9 and c.pairs.gates.length_ratio is None
    changed = set(diff_configs(base.model_dump(mode="json"), c.model_dump(mode="json")))
    assert changed == {"training.seed", "training.learning_rate", "training.lora.enabled", "languages",
                       "evaluation.tasks", "pairs.gates.length_ratio"}
    assert c.training.beta == 0.2  # the rest of a section is kept


@pytest.mark.parametrize("item, words", [
    ("training.seed", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("training..seed=3", "expected KEY=VALUE"),
    ("training.sead=3", "training.sead: unknown key"),
    ("training.seed=[1", "not valid YAML"),
    ("training.beta.x=1", "training.beta is a float, not a mapping"),
    ("evaluation.tasks.3.limit=1", "evaluation.tasks is a list of 1; '3' is not an index"),
    ("training.seed=many", "training.seed"),
])
def test_a_bad_set_names_what_is_wrong(tmp_path, item, words):
    path = tmp_path / "c.yaml"
    path.write_text("prompts:\n  - path: data/{lang}.jsonl\ntraining:\n  beta: 0.2\n"
                    "evaluation:\n  tasks:\n    - {task: mgsm, data: [\"d/{lang}.jsonl\"]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(path, [item])


def test_demo_config_and_diff():
    d = demo_config(limit=3, iterations=3)
    assert d.limit == 3 and len(d.prompts) == 3
    a, b = d.model_dump(mode="json"), demo_config().model_dump(mode="json")
    assert diff_configs(a, b) == ["evaluation.tasks", "iterations", "limit", "prompts"]


def test_translation_defaults_follow_the_original():
    c = cfg()
    assert c.translation.repetition_penalty == 1.0  # a penalty punishes copying names and numbers
    assert c.generation.openai.api_key_env is None  # no key unless the user names its variable
    assert c.prompts[0].task == "instruction"


OPENAI_NAMED = {"engine": "openai", "openai": {"model_name": "served-model"}}
MGSM = {"task": "mgsm", "data": ["m/{lang}.jsonl"]}


@pytest.mark.parametrize(
    "over, key, words",
    [
        ({"translation": {"batch_size": 32}}, "translation.batch_size", "unknown key"),
        ({"generation": OPENAI_NAMED}, "(top level)", "without serve_command"),
        ({"iterations": 1, "generation": OPENAI_NAMED, "evaluation": {"tasks": [MGSM]}},
         "(top level)", "without serve_command"),
        ({"evaluation": {"tasks": [MGSM, MGSM]}}, "evaluation.tasks", "two tasks are named 'mgsm'"),
        ({"evaluation": {"tasks": [MGSM, {**MGSM, "label": "mgsm"}]}}, "evaluation.tasks", "own label"),
        ({"evaluation": {"tasks": [{**MGSM, "label": "a/b"}]}}, "evaluation.tasks.0.label", "pattern"),
        ({"prompts": [{"path": "a/{lang}.jsonl", "task": "maths"}]}, "prompts.0.task", "'instruction' or 'math'"),
    ],
)
def test_more_bad_values_name_the_key(over, key, words):
    with pytest.raises(ConfigError) as err:
        cfg(**over)
    msg = str(err.value)
    assert f"{key}: " in msg and words in msg and "\n" not in msg


def test_one_served_model_is_enough_for_one_model():
    # One iteration, no evaluation: only M0 is ever served, so a fixed model_name is right.
    assert cfg(iterations=1, generation=OPENAI_NAMED).generation.openai.model_name == "served-model"
    served = {"engine": "openai", "openai": {"model_name": "m", "serve_command": "serve {model} --port {port}"}}
    assert cfg(generation=served).generation.openai.serve_command


def test_two_tasks_of_one_kind_with_labels():
    c = cfg(evaluation={"tasks": [MGSM, {**MGSM, "label": "mgsm_hard"}]})
    assert [t.name for t in c.evaluation.tasks] == ["mgsm", "mgsm_hard"]


def test_task_template_with_other_braces():
    c = cfg(generation={"task_template": r"{prompt} Put the final number in \boxed{} ({language})."})
    assert r"\boxed{}" in c.generation.task_template


def test_unknown_task_kind_lists_the_kinds():
    with pytest.raises(ConfigError) as err:
        cfg(evaluation={"tasks": [{**MGSM, "task": "mgsn"}]})
    assert str(err.value).endswith("evaluation.tasks.0.task: expected one of the task kinds mgsm, fidelity, "
                                   "x_alpacaeval, lm_eval (got 'mgsn')")


@pytest.mark.parametrize("task, key, words", [
    ({**MGSM, "template": "Solve in {language}"}, "evaluation.tasks.0.template", "neither a known name"),
    ({**MGSM, "families": ["arc"]}, "evaluation.tasks.0.families", "unknown key"),
    ({"task": "fidelity"}, "evaluation.tasks.0", "task fidelity needs data"),
])
def test_each_task_kind_checks_its_own_fields(task, key, words):
    with pytest.raises(ConfigError) as err:
        cfg(evaluation={"tasks": [task]})
    assert f"{key}: " in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


def test_question_is_the_prompt_placeholder_too():
    c = cfg(generation={"task_template": "{question} ({language})"},
            evaluation={"tasks": [{**MGSM, "template": "{prompt} ({language})"}]})
    assert c.generation.task_template == "{question} ({language})"
    assert c.evaluation.tasks[0].template == "{prompt} ({language})"


def test_one_iteration_may_change_its_own_stage_settings():
    """`per_iteration.T`: iteration T's translation, pairs and training settings over the
    run's (the rest of each section kept); every other iteration runs with the run's."""
    c = cfg(iterations=3, pairs={"gates": {"min_langid_chars": 10}},
            per_iteration={2: {"pairs": {"max_opening_share": 0.1, "gates": {"cut_off_native_rejected": "keep"}},
                               "training": {"learning_rate": 1e-5}}})
    second = c.at_iteration(2)
    assert (second.pairs.max_opening_share, second.pairs.gates.cut_off_native_rejected) == (0.1, "keep")
    assert second.pairs.gates.min_langid_chars == 10 and second.training.learning_rate == 1e-5
    assert second.training.beta == c.training.beta and second.per_iteration == {}
    for t in (1, 3):
        assert c.at_iteration(t) is c and c.pairs.max_opening_share is None
    assert c.per_iteration[2].settings() == {"pairs.max_opening_share": 0.1,
                                            "pairs.gates.cut_off_native_rejected": "keep",
                                            "training.learning_rate": 1e-5}


@pytest.mark.parametrize("per_iteration, words", [
    ({3: {"pairs": {"dominant_pairs": False}}}, "per_iteration.3: this run has iterations 1 to 2"),
    ({2: {"pairs": {"max_opening_share": 1.5}}}, "per_iteration.2.pairs.max_opening_share: Input should be less than 1"),
    ({2: {"pairs": {"gates": {"cut_off": "keep"}}}}, "per_iteration.2.pairs.gates.cut_off: unknown key"),
    ({2: {"generation": {"max_new_tokens": 3}}}, "per_iteration.2.generation: unknown key"),
    ({2: {"translation": {"examples": "x.jsonl"}}}, "per_iteration.2.translation.examples: read once for the whole run"),
    ({2: {"training": {"report_to": "wandb"}}}, "per_iteration.2.training.report_to: read once"),
])
def test_bad_settings_of_one_iteration_name_the_key(per_iteration, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        cfg(per_iteration=per_iteration)


def test_set_reaches_the_settings_of_one_iteration(tmp_path):
    """`--set per_iteration.2.pairs...` adds to the YAML's `2:` entry, not a second one."""
    path = tmp_path / "c.yaml"
    path.write_text("prompts:\n  - path: data/{lang}.jsonl\nper_iteration:\n  2:\n    training: {seed: 7}\n",
                    encoding="utf-8")
    c, _ = load_config(path, ["per_iteration.2.pairs.max_opening_share=0.2"])
    assert c.per_iteration[2].settings() == {"pairs.max_opening_share": 0.2, "training.seed": 7}
