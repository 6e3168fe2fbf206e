"""Progress bars for long work (populate, the removable scan, exports, snapshots, studies),
drawn by tqdm (rate and ETA) on stderr: shown only on a terminal, quiet when piped, under
``--json``, or when asked (``enabled=False``)."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TextIO

from tqdm import tqdm


class Progress:
    """A bar of ``total`` units: ``update(n)`` adds, ``set(done, total)`` moves it to an
    absolute count (what the core reports for native work). A context manager; ``close()``
    is idempotent."""

    def __init__(
        self,
        total: int,
        label: str,
        enabled: Optional[bool] = None,
        stream: Optional[TextIO] = None,
        unit: str = "it",
    ):
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(isatty() if enabled is None else enabled) and total > 0
        self.total, self.label, self.done = total, label, 0
        self._bar: Optional[Any] = None
        if self.enabled:
            self._bar = tqdm(
                total=total,
                desc=label,
                file=self.stream,
                unit=unit,
                # Counts of blocks or pages read as integers; bytes as KiB/MiB/GiB.
                unit_scale=unit == "B",
                unit_divisor=1024 if unit == "B" else 1000,
                dynamic_ncols=True,
                mininterval=0.1,
                # The finished bar stays, so the user sees what was done and how fast.
                leave=True,
            )

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def set(self, done: int, total: Optional[int] = None) -> None:
        """Move the bar to ``done`` of ``total`` (a native operation's own count)."""
        if self._bar is not None and total is not None and total != self._bar.total:
            self._bar.total = total
            self.total = total
        if done > self.done:
            self.update(done - self.done)

    @property
    def callback(self) -> Optional[Callable[[int, int], None]]:
        """``set`` as a native operation's progress(done, total) callback; None when the bar
        is not drawn, so the native work does not call back for nothing."""
        return self.set if self.enabled else None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
