"""Real kernels in the loop: boot a kernel under QEMU (TCG), make it do what memscan models,
record what it did (``runner``), and compare the model with the record attempt by attempt
(``agree``). See docs/groundtruth.md."""

from .guest import HarnessError
from .scenario import Scenario

__all__ = ["HarnessError", "Scenario"]
