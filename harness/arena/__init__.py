"""The human arena: `harness-arena SWEEP_DIR` shows raters one prompt and two methods' completions, blind, and
records their votes; the votes become Bradley-Terry ratings in the report (the `human` suite) and a preference
dataset that `task=hf_preferences` reads."""
