"""alignment-harness: compare language-model alignment algorithms side by side."""

import os

# Before torch is imported anywhere: OpenMP threads that spin while waiting made every stage 5-20x slower
# whenever two jobs shared the CPU (a sweep, a parallel test); sleeping threads cost little when alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from harness.errors import HarnessError

__all__ = ["HarnessError"]
__version__ = "0.1.0"
