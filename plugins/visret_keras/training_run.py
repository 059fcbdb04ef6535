"""A CNN training run on disk, epoch by epoch: watched while it runs, resumed where it stopped.

Beside ``NAME.keras`` a run keeps ``NAME.log.csv`` (one row per epoch of every phase: the epoch counted
over the whole run, the phase, the losses and accuracies), ``NAME.best.keras`` (the model of the lowest
validation loss so far), ``NAME.last.keras`` (the model after the last finished epoch) and
``NAME.run.json`` (what the run was asked, which phase and epoch it reached, the history so far, the
early-stopping state). Each is replaced whole after every epoch, so a run killed at any point loses at
most the epoch in flight: running the same ``visret train`` again loads the last model and goes on
(``--resume`` insists that there is such a run).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from visret import VisretError

log = logging.getLogger("visret")
#: The phases a run goes through, in order: the head (or the whole network from scratch), then fine-tuning.
PHASES = ("train", "fine-tune")


def arguments_key(arguments: dict[str, Any]) -> str:
    """What a resumed run must have been asked the same: the split, the network, every training option."""
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()


class TrainingRun:
    """The files of one run and its progress record (``state``)."""

    def __init__(self, out: Path, arguments: dict[str, Any], on_best: Callable[[Path], None] | None = None):
        self.out = Path(out)
        self.on_best = on_best  # told when NAME.best.keras is written (the pipeline gives it its classes)
        self.key = arguments_key(arguments)
        self.log = self.out.with_suffix(".log.csv")
        self.last = self.out.with_suffix(".last.keras")
        self.record = self.out.with_suffix(".run.json")
        self.state: dict[str, Any] = {}

    @staticmethod
    def files(out: Path) -> list[Path]:
        out = Path(out)
        return [out.with_suffix(suffix) for suffix in (".log.csv", ".last.keras", ".run.json")]

    @staticmethod
    def is_record(out: Path) -> bool:
        """Whether ``NAME.run.json`` beside ``out`` is a run's record (so the files beside it are the run's)."""
        try:
            state = json.loads(Path(out).with_suffix(".run.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(state, dict) and isinstance(state.get("key"), str)

    def unfinished(self) -> dict[str, Any] | None:
        """The record of an unfinished run of the same arguments that can go on, or None."""
        try:
            state = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("key") != self.key or state.get("finished") or not self.last.is_file():
            return None
        return state

    def begin(self, resume: bool) -> dict[str, Any] | None:
        """Take up the unfinished run of the same arguments when there is one (killed, or stopped by its
        time budget: running the same command again goes on, and says so), else start afresh. ``resume``
        insists: without such a run it is a one-line error naming why."""
        state = self.unfinished()
        if resume and state is None:
            why = "it finished" if self._finished() else "it was asked other arguments" if self.record.is_file() else "there is none"
            raise VisretError(f"nothing to resume at {self.out} ({why}); run the same command without --resume")
        if state is None:
            for file in (self.log, self.last, self.record):
                file.unlink(missing_ok=True)
            state = {"key": self.key, "phase": PHASES[0], "phase_epochs": 0, "history": {}, "phases": {}, "done_phases": [],
                     "seconds": 0.0, "finished": False, "resumed": 0}
            self.state = state
            return None
        state["resumed"] = int(state.get("resumed", 0)) + 1
        self.state = state
        self._write_log()  # the log as the record has it, whatever a kill left
        log.info(f"resuming the unfinished run at {self.out} after epoch {len(state['history'].get('loss', []))} "
                 f"(delete {self.record.name} to start afresh)")
        return state

    def _finished(self) -> bool:
        try:
            return bool(json.loads(self.record.read_text()).get("finished"))
        except (OSError, ValueError, AttributeError):
            return False

    def epoch_done(self, net, phase: str, phase_epoch: int, logs: dict[str, float], extra: dict[str, Any]) -> None:
        """Record one finished epoch: the model as it is now, where the run stands, then the log, each
        replaced whole (a kill in between leaves the previous epoch's, never half of one)."""
        history = self.state["history"]
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
        epoch = len(history.get("loss", []))
        self.state["phases"][phase] = phase_epoch
        self.state.setdefault("rows", []).append({"epoch": epoch, "phase": phase, **{k: float(v) for k, v in sorted(logs.items())}})
        self.state.update(phase=phase, phase_epochs=phase_epoch, **extra)
        loss, best = logs.get("val_loss"), self.state.get("best_val_loss")
        if loss is not None and (best is None or float(loss) < best):  # the best epoch so far: NAME.best.keras
            self.state["best_val_loss"] = float(loss)
            _save_model(net, self.out.with_suffix(".best.keras"))
            if self.on_best is not None:
                self.on_best(self.out.with_suffix(".best.keras"))
        _save_model(net, self.last)
        self._write()
        self._write_log()

    def _write_log(self) -> None:
        rows = self.state.get("rows", [])
        columns = list(dict.fromkeys(key for row in rows for key in row))
        temporary = self.log.with_name(f".tmp-{os.getpid()}-{self.log.name}")
        with open(temporary, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, self.log)

    def phase_done(self, net, phase: str) -> None:
        """A phase ran its course (its best weights restored): a resumed run starts the next one from here."""
        self.state["done_phases"] = [*self.state.get("done_phases", []), phase]
        _save_model(net, self.last)
        self._write()

    def finish(self, stopped: str | None) -> None:
        """A run that ran its course is finished (nothing to resume); one stopped by its time budget
        stays resumable, its last model kept."""
        self.state["stopped"] = stopped
        if stopped is None:
            self.state["finished"] = True
            self.last.unlink(missing_ok=True)
        self._write()

    def _write(self) -> None:
        temporary = self.record.with_name(f".tmp-{os.getpid()}-{self.record.name}")
        temporary.write_text(json.dumps(self.state))
        os.replace(temporary, self.record)


def _save_model(net, path: Path) -> None:
    """A Keras model saved under a temporary name, then renamed: never half a file."""
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    net.save(temporary)
    os.replace(temporary, path)
