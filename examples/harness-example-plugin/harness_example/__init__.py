"""harness-example-plugin: an out-of-tree plugin package for alignment-harness.

It adds an algorithm (`algorithm=slic`, YAML only: harness_example/conf/algorithm/slic.yaml) and an eval suite
(`eval=[...,hedging]`, harness_example/evals.py). Hydra finds its `conf/` through the SearchPathPlugin in
hydra_plugins/harness_example/, so installing the package is all it takes.
"""
