"""The shipped configs validate, and their data loads from ../shared/data."""

from pathlib import Path

import pytest

from lidr.config import demo_config, diff_configs, load_config
from lidr.pipeline import Pipeline
from lidr.text.templates import PAPER_MATH_TEMPLATE

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_yaml_is_the_embedded_demo():
    cfg, _ = load_config(CONFIGS / "demo.yaml")
    assert cfg == demo_config()


@pytest.mark.parametrize("name, lr, batch", [("paper_instruction", 5e-7, 16), ("paper_math", 5e-6, 64)])
def test_paper_configs_plan_on_shared_data(name, lr, batch, shared_data, tmp_path):
    cfg, base = load_config(CONFIGS / f"{name}.yaml")
    t = cfg.training
    assert (t.beta, t.alpha, t.learning_rate, t.epochs) == (0.1, 1.0, lr, 1)
    assert t.batch_size * t.gradient_accumulation_steps * t.num_processes == batch
    assert t.accelerate_config == "deepspeed_zero3" and t.precision == "bf16"
    assert cfg.evaluation.tasks and cfg.translation.repetition_penalty == 1.0
    assert cfg.languages == ["es", "ru", "de", "fr"]
    pipe = Pipeline(cfg, tmp_path / "run", base)
    pipe.prepare()  # resolves every path and aligns every prompt block, loads no model
    first, second = pipe.plans
    assert {len(v) for v in first.prompts.values()} == {1000}
    assert not {p.id for p in first.prompts["en"]} & {p.id for p in second.prompts["en"]}
    if name == "paper_math":
        assert cfg.generation.task_template == PAPER_MATH_TEMPLATE
        assert first.prompts["es"][0].text.startswith("Natalia vendió")
    else:
        assert len(pipe.task_ids) == 88


@pytest.mark.parametrize("path", sorted((CONFIGS / "ablations").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_ablation_changes_one_section_of_the_evidence_run(path):
    """An ablation is read against the evidence run: its iteration 1, evaluated on dev (the
    rest is how it is scoped: one iteration, one prompt block, no test split). It changes
    settings of one section only (the quality gates, the training...)."""
    base = load_config(CONFIGS / "evidence_arith.yaml")[0]
    abl = load_config(path)[0]
    scope = {"name", "iterations", "prompts", "evaluation.tasks"}
    differ = [k for k in diff_configs(base.model_dump(mode="json"), abl.model_dump(mode="json")) if k not in scope]
    assert differ and len({k.rsplit(".", 1)[0] for k in differ}) == 1, differ
    assert abl.prompts_for(1) == base.prompts_for(1)
    assert [t.name for t in abl.evaluation.tasks] == ["dev"]


def _changed(base, variant, scope) -> dict:
    """The settings `variant` changes against `base` (configs), with their new values; the keys
    in `scope` (how a run is scoped, not what it tests) left out."""
    old, new = base.model_dump(mode="json"), variant.model_dump(mode="json")
    return {k: _get(new, k) for k in diff_configs(old, new) if k not in scope}


def _changes(path: Path) -> dict:
    """The settings an ablation changes against the evidence run (scope keys aside)."""
    base, abl = load_config(CONFIGS / "evidence_arith.yaml")[0], load_config(path)[0]
    return _changed(base, abl, {"name", "iterations", "prompts", "evaluation.tasks"})


def _get(data: dict, dotted: str):
    for part in dotted.split("."):
        data = data[part]
    return data


@pytest.mark.parametrize("path", sorted((CONFIGS / "ablations" / "combined").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_combined_ablation_is_made_of_measured_single_ones(path):
    """A combination sets only what single ablations set, to the same values, and takes from
    at least two of them: its effect is read against theirs."""
    singles = [_changes(p) for p in sorted((CONFIGS / "ablations").glob("*.yaml"))]
    combo = _changes(path)
    used = [s for s in singles if s and all(k in combo and combo[k] == v for k, v in s.items())]
    assert combo and set(combo) == {k for s in used for k in s}, (combo, used)
    assert len(used) >= 2
    assert load_config(path)[0].prompts_for(1) == load_config(CONFIGS / "evidence_arith.yaml")[0].prompts_for(1)


def test_the_chosen_evidence_run_changes_what_its_combined_ablation_changed():
    """configs/evidence_arith_chosen.yaml is the evidence run with the settings chosen on dev,
    and nothing else: a setting changed there but never measured on dev fails."""
    chosen = CONFIGS / "evidence_arith_chosen.yaml"
    ablation = CONFIGS / "ablations" / "combined" / "evidence_lr2e-5_langid10_unidentified_drop.yaml"
    assert _changes(chosen) == _changes(ablation) != {}
    assert load_config(chosen)[0].iterations == 2
    assert [t.name for t in load_config(chosen)[0].evaluation.tasks] == ["dev", "test"]


@pytest.mark.parametrize("path", sorted((CONFIGS / "ablations" / "replicates").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_replicate_changes_only_the_training_seed_of_its_ablation(path):
    """A replicate measures run-to-run spread: the same pairs trained in another order."""
    original = CONFIGS / "ablations" / "combined" / (path.stem.rsplit("_seed", 1)[0] + ".yaml")
    differ = diff_configs(load_config(original)[0].model_dump(mode="json"), load_config(path)[0].model_dump(mode="json"))
    assert sorted(differ) == ["name", "training.seed"], differ


@pytest.mark.parametrize("path", sorted((CONFIGS / "ablations" / "on_chosen").glob("*.yaml")), ids=lambda p: p.stem)
def test_an_ablation_of_the_chosen_setting_changes_one_section_of_it(path):
    """An ablation of the dev-chosen combination is read against that combination's iteration 1
    on dev: it changes settings of one section of it, and only that; it may add dev sets
    (its first task is the combination's dev), never a test split."""
    chosen = CONFIGS / "ablations" / "combined" / "evidence_lr2e-5_langid10_unidentified_drop.yaml"
    base, abl = load_config(chosen)[0], load_config(path)[0]
    differ = [k for k in diff_configs(base.model_dump(mode="json"), abl.model_dump(mode="json"))
              if k not in ("name", "evaluation.tasks")]
    assert differ and len({k.rsplit(".", 1)[0] for k in differ}) == 1, differ
    assert abl.evaluation.tasks[0] == base.evaluation.tasks[0]
    assert not any("test" in t.name or any("/test/" in d for d in t.data) for t in abl.evaluation.tasks)


@pytest.mark.parametrize("path", sorted((CONFIGS / "ablations" / "on_samples3").glob("*.yaml")), ids=lambda p: p.stem)
def test_an_ablation_of_three_answers_changes_only_the_gates(path):
    """Read against the three-answer run on dev, whose answers and translations it reuses."""
    base = CONFIGS / "ablations" / "on_chosen" / "evidence_samples3.yaml"
    differ = diff_configs(load_config(base)[0].model_dump(mode="json"), load_config(path)[0].model_dump(mode="json"))
    assert differ and all(k == "name" or k.startswith("pairs.gates.") for k in differ), differ


AUTO_TEST_VARIANTS = {
    "evidence_arith_auto_seed43": {"training.seed": 43},
    "evidence_arith_auto_seed44": {"training.seed": 44},
    "evidence_arith_auto_no_dominant_pairs": {"pairs.dominant_pairs": False},
    "evidence_arith_auto_no_nll": {"training.alpha": 0.0},
    "evidence_arith_auto_language_pairs": {"pairs.language_pairs": True},
    # LoRA comes with its own learning rate (adapters want about ten times full training's).
    "evidence_arith_auto_lora": {"training.lora.enabled": True, "training.learning_rate": 2e-4},
}


@pytest.mark.parametrize("name", sorted(AUTO_TEST_VARIANTS))
def test_a_variant_of_the_auto_test_run_makes_its_one_change(name):
    """Each trains again on the test run's iteration-1 pairs (copied with --reuse): iteration 1
    only, on dev, and one setting changed, so what differs from that run's M1 is that setting."""
    base = load_config(CONFIGS / "evidence_arith_auto_test.yaml")[0]
    variant = load_config(CONFIGS / f"{name}.yaml")[0]
    changes = _changed(base, variant, {"name", "max_iterations", "prompts", "evaluation.tasks"})
    assert changes == AUTO_TEST_VARIANTS[name]
    assert variant.max_iterations == 1 and variant.prompts_for(1) == base.prompts_for(1)
    assert [t.name for t in variant.evaluation.tasks] == ["dev", "chat_dev"]
    assert variant.evaluation.tasks == base.evaluation.tasks[:2]


def test_the_language_pairs_run_is_the_auto_test_run_with_them_for_two_iterations():
    """configs/evidence_arith_auto_language_pairs_ratio.yaml: the dev-chosen language pairs are
    its only change to the auto test run; both blocks, read on dev and chat_dev (the test split
    is read once afterwards, not by the run)."""
    base = load_config(CONFIGS / "evidence_arith_auto_test.yaml")[0]
    run = load_config(CONFIGS / "evidence_arith_auto_language_pairs_ratio.yaml")[0]
    changes = _changed(base, run, {"name", "evaluation.tasks"})
    assert changes == {"pairs.language_pairs": True, "pairs.language_pairs_min_ratio": 0.5}
    assert run.max_iterations == 2 and run.prompts == base.prompts
    assert run.evaluation.tasks == base.evaluation.tasks[:2]


POOLED_RUN = CONFIGS / "evidence_arith_chosen_auto_pooled.yaml"
ON_POOLED = {
    "evidence_seed": {},  # the seed is set with --set training.seed=N
    "evidence_beta0.5": {"training.beta": 0.5},
    "evidence_beta0.02": {"training.beta": 0.02},
    "evidence_prompts600": {},  # its change is its prompt block, checked below
    "evidence_prompts1200": {},
}


def _pooled_scope_changes(base, variant) -> dict:
    scope = {"name", "iterations", "max_iterations", "stopping", "stopping.guards", "prompts", "evaluation.tasks"}
    return _changed(base, variant, scope)


@pytest.mark.parametrize("name", sorted(ON_POOLED))
def test_an_ablation_on_the_pooled_split_makes_its_one_change_to_iteration_1(name):
    """Read against iteration 1 of the pooled run (copied with --reuse) on dev + dev_2 pooled:
    the one setting named, and only the pooled dev task, never a test split."""
    base = load_config(POOLED_RUN)[0]
    variant = load_config(CONFIGS / "ablations" / "on_pooled" / f"{name}.yaml")[0]
    assert _pooled_scope_changes(base, variant) == ON_POOLED[name]
    assert variant.iterations == 1 and variant.evaluation.tasks == base.evaluation.tasks[:1]
    if name == "evidence_prompts600":
        # Twice the prompts: the pooled run's two training blocks, read in one iteration.
        assert variant.prompts_for(1).mix == [base.prompts_for(1), base.prompts_for(2)]
    elif name == "evidence_prompts1200":
        # Four times the prompts: the 600-prompt run's two iterations' blocks in one.
        run600 = load_config(CONFIGS / "evidence_arith_prompts600_auto_pooled.yaml")[0]
        assert variant.prompts_for(1).mix == run600.prompts_for(1).mix + run600.prompts_for(2).mix
    else:
        assert variant.prompts_for(1) == base.prompts_for(1)


def test_the_600_prompt_run_is_the_pooled_run_with_two_blocks_per_iteration(tmp_path):
    """configs/evidence_arith_prompts600_auto_pooled.yaml: blocks 1+2, then 3+4 (600 distinct
    problems per language each), iteration 1 the ablation's, the README's off-target guard; its
    only other change to the pooled run is that it reads the pooled dev split alone."""
    base = load_config(POOLED_RUN)[0]
    run, run_dir = load_config(CONFIGS / "evidence_arith_prompts600_auto_pooled.yaml")
    assert _pooled_scope_changes(base, run) == {}
    assert run.prompts_for(1) == load_config(CONFIGS / "ablations" / "on_pooled" / "evidence_prompts600.yaml")[0].prompts_for(1)
    assert [s.path for s in run.prompts_for(2).mix] == [f"bundled:arith/train_{k}/{{lang}}.jsonl" for k in (3, 4)]
    assert run.stopping.model_dump(exclude={"guards"}) == base.stopping.model_dump(exclude={"guards"})
    assert [(g.task, g.metric, g.max_loss) for g in run.stopping.guards] == [("dev_pooled", "off_target", 0.10)]
    assert run.evaluation.tasks == base.evaluation.tasks[:1]
    pipe = Pipeline(run, tmp_path / "run", run_dir)
    pipe.prepare()
    first, second = pipe.plans
    assert {len(v) for v in first.prompts.values()} == {len(v) for v in second.prompts.values()} == {600}
    assert not {p.id for p in first.prompts["es"]} & {p.id for p in second.prompts["es"]}
    assert len({p.text for plan in pipe.plans for p in plan.prompts["es"]}) == 1200


def test_the_600_prompt_run_with_pair_settings_of_its_own_in_iteration_2():
    """configs/evidence_arith_prompts600_it2_keep.yaml: the 600-prompt run with, in iteration 2
    only, the answer-frame cap and the pairs against loops kept; iteration 1 is the same."""
    base = load_config(CONFIGS / "evidence_arith_prompts600_auto_pooled.yaml")[0]
    run = load_config(CONFIGS / "evidence_arith_prompts600_it2_keep.yaml")[0]
    assert set(_changed(base, run, {"name"})) == {"per_iteration.2"}
    assert run.per_iteration[2].settings() == {"pairs.max_opening_share": 0.1,
                                               "pairs.gates.cut_off_native_rejected": "keep"}
    assert run.model_copy(update={"per_iteration": {}, "name": base.name}) == base
    assert set(_changed(base, run.at_iteration(2), {"name"})) == {"pairs.max_opening_share",
                                                                   "pairs.gates.cut_off_native_rejected"}


def test_the_two_iteration_1200_prompt_run_is_the_ablation_then_blocks_5_to_8(tmp_path):
    """configs/evidence_arith_prompts1200_2it.yaml: iteration 1 is the 1,200-prompt ablation's
    (so --reuse copies it), iteration 2 reads blocks 5-8 (1,200 other problems per language) with
    the iteration-2 settings chosen on the 600-prompt run, and the rule watches loops too."""
    ablation = load_config(CONFIGS / "ablations" / "on_pooled" / "evidence_prompts1200.yaml")[0]
    run, run_dir = load_config(CONFIGS / "evidence_arith_prompts1200_2it.yaml")
    assert set(_pooled_scope_changes(ablation, run)) == {"per_iteration.2"}
    assert run.prompts_for(1) == ablation.prompts_for(1)
    assert [s.path for s in run.prompts_for(2).mix] == [f"bundled:arith/train_{k}/{{lang}}.jsonl" for k in (5, 6, 7, 8)]
    assert run.per_iteration[2].settings() == {"pairs.max_opening_share": 0.1,
                                               "pairs.gates.cut_off_native_rejected": "keep",
                                               "training.learning_rate": 1e-5}
    assert [(g.metric, g.max_loss) for g in run.stopping.guards] == [("off_target", 0.10), ("degenerate", 0.10)]
    pipe = Pipeline(run, tmp_path / "run", run_dir)
    pipe.prepare()
    first, second = pipe.plans
    assert {len(v) for v in first.prompts.values()} == {len(v) for v in second.prompts.values()} == {1200}
    assert len({p.text for plan in pipe.plans for p in plan.prompts["es"]}) == 2400


def test_the_end_of_turn_base_is_the_chosen_setting_with_the_1200_runs_iteration_2_settings():
    """configs/evidence_arith_300_2it_eot_base.yaml: iteration 1 is the setting chosen on dev
    (evidence_arith_chosen_dev2_2it.yaml's blocks and settings), iteration 2 the 1,200-prompt
    run's iteration-2 settings; the variant changes iteration 2's training only, so --reuse copies
    everything up to its pairs."""
    chosen = load_config(CONFIGS / "evidence_arith_chosen_dev2_2it.yaml")[0]
    run1200 = load_config(CONFIGS / "evidence_arith_prompts1200_2it.yaml")[0]
    base = load_config(CONFIGS / "evidence_arith_300_2it_eot_base.yaml")[0]
    assert set(_pooled_scope_changes(chosen, base)) == {"per_iteration.2"}
    assert [base.prompts_for(t) for t in (1, 2)] == [chosen.prompts_for(t) for t in (1, 2)]
    assert base.per_iteration[2].settings() == run1200.per_iteration[2].settings()
    assert base.iterations == 2 and [t.label for t in base.evaluation.tasks] == ["dev_pooled"]
    variant = load_config(CONFIGS / "evidence_arith_300_2it_eot_base.yaml",
                          overrides=["per_iteration.2.training.rejected_end_of_turn=false"])[0]
    assert _changed(base, variant, set()) == {"per_iteration.2.training.rejected_end_of_turn": False}


def test_the_end_of_turn_auto_run_is_the_base_with_the_option_everywhere_and_a_loop_free_rule():
    """configs/evidence_arith_300_eot_auto.yaml: the end-of-turn base with
    `training.rejected_end_of_turn: false` in both iterations and nothing else trained otherwise;
    `iterations: auto` (at most the base's 2) decides on dev and dev_2 pooled by
    `accuracy_no_loop`, never on a test split."""
    base = load_config(CONFIGS / "evidence_arith_300_2it_eot_base.yaml")[0]
    auto = load_config(CONFIGS / "evidence_arith_300_eot_auto.yaml")[0]
    assert _pooled_scope_changes(base, auto) == {"training.rejected_end_of_turn": False}
    assert auto.iterations == "auto" and auto.max_iterations == 2
    assert (auto.stopping.task, auto.stopping.metric) == ("dev_pooled", "accuracy_no_loop")
    assert [(g.task, g.metric) for g in auto.stopping.guards] == [("dev_pooled", "off_target_identified")]
    assert [t.label for t in auto.evaluation.tasks] == ["dev_pooled"]
    assert all(auto.at_iteration(t).training.rejected_end_of_turn is False for t in (1, 2))
