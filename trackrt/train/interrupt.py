"""Stopping a training stage cleanly on SIGTERM or SIGINT (a batch system's time limit, `timeout`, Ctrl-C):
the step in progress finishes, `<stage>/last` is saved, and `trackrt train --resume` goes on from there."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """A stage stopped on a signal after saving its resumable `last` checkpoint."""

    def __init__(self, stage: str, step: int, total_steps: int, signum: int) -> None:
        self.stage, self.step, self.total_steps, self.signum = stage, step, total_steps, signum
        name = signal.Signals(signum).name
        super().__init__(
            f"{stage}: stopped by {name} after step {step} of {total_steps}; "
            "its last checkpoint is saved, and `trackrt train ... --resume` continues from it"
        )

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


class StopSignals:
    """While active, SIGTERM and SIGINT are recorded in `received` instead of ending the process; a second
    SIGINT raises KeyboardInterrupt at once. Outside the main thread (where Python cannot take signals)
    it installs nothing."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
