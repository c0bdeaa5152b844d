# Hydra's pkg:// config source reads a folder only if it is a package: this file makes `pkg://harness_example.conf`.
