"""alignment-harness: compare language-model alignment algorithms side by side."""

from harness.errors import HarnessError

__all__ = ["HarnessError"]
__version__ = "0.1.0"
