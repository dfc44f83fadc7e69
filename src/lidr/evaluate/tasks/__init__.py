"""The evaluation tasks, one module per kind, named by the config's `task:` value
(`lidr.evaluate.runner` imports `lidr.evaluate.tasks.<task>`; there is no list of them).

Each module has the same two functions; `languages` are the task's own or else the run's,
`gen` the run's generation section (which engine runs the model):

    check(task, languages, base_dir, gen) -> None
        fail before any model loads (missing data files, a missing judge model)
    run(task, model_path, model_name, out_dir, languages, base_dir, baseline_dir, gen) -> dict
        evaluate the model; write out_dir/<task>.json (evaluate.base.write_result) and
        return it. `baseline_dir` is where M0's evaluation of this task lives in a run.

and a kind whose config can say `m0_is_baseline` (x_alpacaeval's `baseline: M0`) also

    write_baseline(task, model_path, out_dir, languages, base_dir, gen) -> None
        M0's outputs that later models are measured against (M0 has no result itself)

A new kind is this module plus its config class in lidr/config.py.
"""
