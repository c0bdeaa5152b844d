"""Hydra plugins of harness-example-plugin (Hydra imports every module under the `hydra_plugins` namespace)."""
