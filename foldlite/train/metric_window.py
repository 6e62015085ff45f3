"""The training steps' metrics, read from the devices once per log interval, and the run's
timing (``MetricWindow``)."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np


@dataclasses.dataclass
class Flushed:
    means: dict            # mean of each metric over the finite steps read (empty if none)
    nonfinite: list        # {step, loss, grad_norm} of each non-finite step read


class MetricWindow:
    """The steps' metrics, kept on the device until ``flush`` reads them all at once (one host
    round trip per ``log_interval`` steps instead of one per step), and the timing of the run:
    the first flushed window holds the compilation and is not timed."""

    def __init__(self, start: int):
        self._pending: list[tuple[int, dict]] = []
        self._log: dict[str, list[float]] = {}
        self._next_step = start
        self._last_sync: float | None = None
        self.timed_steps = 0
        self.timed_time = 0.0
        self.timed_residues = 0.0
        self.data_wait = 0.0
        self.nonfinite_run = 0
        self.last: dict = {}

    def add(self, metrics: dict) -> None:
        self._pending.append((self._next_step, metrics))
        self._next_step += 1

    def flush(self, data_wait: float = 0.0) -> Flushed:
        """Read every pending step's metrics (waits for the device to finish them)."""
        host = jax.device_get([m for _, m in self._pending])
        now = time.time()
        steps = [s for s, _ in self._pending]
        self._pending = []
        means: dict[str, list[float]] = {}
        bad = []
        residues = 0.0
        for s, m in zip(steps, host):
            m = {k: float(np.asarray(v)) for k, v in m.items()}
            residues += m["residues"]
            if m["finite"] < 1.0:
                self.nonfinite_run += 1
                bad.append({"step": s + 1, "loss": m["loss"], "grad_norm": m["grad_norm"]})
                continue
            self.nonfinite_run = 0
            self.last = m
            for k, v in m.items():
                means.setdefault(k, []).append(v)
                self._log.setdefault(k, []).append(v)
        if steps and self._last_sync is not None:
            self.timed_steps += len(steps)
            self.timed_time += now - self._last_sync
            self.timed_residues += residues
            self.data_wait += data_wait
        if steps:
            self._last_sync = now
        return Flushed({k: float(np.mean(v)) for k, v in means.items()}, bad)

    def has_log(self) -> bool:
        return bool(self._log)

    def take_log(self) -> dict:
        """Means of the finite steps since the last call (``residues``: their sum)."""
        rec = {k: float(np.mean(v)) for k, v in self._log.items()}
        if "residues" in self._log:
            rec["residues"] = float(np.sum(self._log["residues"]))
        self._log = {}
        return rec

    def speed_measured(self) -> bool:
        """Enough steps timed to plan a time budget: 20, or 3 taking over 30 s."""
        return self.timed_steps >= 20 or (self.timed_steps >= 3 and self.timed_time > 30)

    def steps_per_second(self) -> float:
        return self.timed_steps / self.timed_time if self.timed_time > 0 else float("nan")

    def residues_per_second(self) -> float:
        return self.timed_residues / self.timed_time if self.timed_time > 0 else float("nan")

    def rates(self) -> dict:
        """Throughput after compilation, and the fraction of that time the loop waited for
        batches (the rest is the devices' step time and dispatch)."""
        return {"steps_per_second": self.steps_per_second(),
                "residues_per_second": self.residues_per_second(),
                "data_wait_fraction": self.data_wait / self.timed_time
                if self.timed_time > 0 else float("nan")}
