"""Hydra plugins of alignment-harness (found by Hydra in the `hydra_plugins` namespace once installed)."""
