"""Equal-budget tuning: every method of a comparison tuned with the same number of trials, chosen on validation
prompts, then run on fresh seeds and reported on the test prompts (docs/tuning.md).

    space    a method's search space, as its algorithm YAML declares it (`search:`)
    study    Optuna studies in a database (SQLite by default, any SQLAlchemy URL), their sampler and pruner
    trial    a trial's job side: each snapshot judged on validation prompts as it is saved, pruned trials stopped
    sweep    the Hydra sweeper (hydra/sweeper=tune): tune every method, then the final comparison
    report   the report's tuning section: chosen settings, trials run and pruned, best-so-far, tuned - default
"""
