"""Prosody measured in a process of its own.

Praat (through parselmouth) holds Python's lock through each pitch pass: up to 0.2 s at a time
on a 79 s answer, two passes an answer. Where the face model runs in the same process (`poise
score`, `poise serve`), its thread needs that lock between frames, so every pass stalled it,
and the face model is what an answer's scoring waits for. In a process of its own, Praat stalls
nothing. The worker (``python -m poise_audio.prosody_process``) is started, and has imported
Praat, when the audio service starts. It is this package's own code on both ends of a pipe, so
requests and results travel pickled; no candidate data is written anywhere.

Not ``multiprocessing``: its spawned workers import the caller's ``__main__`` again, which breaks
a script that embeds Poise without an ``if __name__ == "__main__"`` guard.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading

import numpy as np
from poise_common.priority import run_nicer
from poise_common.signals import SpeechSegment

from poise_audio.prosody import Prosody, measure_prosody


class ProsodyProcessDied(RuntimeError):
    """The worker ended without answering, twice in a row."""


class ProsodyProcess:
    """``measure_prosody`` run in one worker process; thread-safe (callers take turns)."""

    def __init__(self, nice: int = 0) -> None:
        self.nice = nice
        self._lock = threading.Lock()
        self._worker: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    def start(self) -> int:
        """Start the worker and wait until it has imported Praat; its pid."""
        with self._lock:
            self._call(("ready",))
            return self._worker.pid

    def measure(self, samples: np.ndarray, sample_rate: int, speech: list[SpeechSegment]) -> Prosody:
        """:func:`measure_prosody` in the worker. A worker that died (killed, out of memory) is
        replaced once; a second death raises, and the answer is redelivered."""
        with self._lock:
            return self._call(("measure", np.asarray(samples), sample_rate, speech))

    def stop(self) -> None:
        with self._lock:
            self._discard()

    def _call(self, request: tuple):
        for attempt in (1, 2):
            worker = self._running()
            try:
                pickle.dump(request, worker.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                worker.stdin.flush()
                outcome, value = pickle.load(worker.stdout)
            except (OSError, EOFError, pickle.UnpicklingError):
                self._discard()
                if attempt == 2:
                    raise ProsodyProcessDied("the prosody process ended without answering") from None
                continue
            if outcome == "error":
                raise value
            return value
        raise AssertionError("not reached")

    def _running(self) -> subprocess.Popen:
        if self._worker is None or self._worker.poll() is not None:
            self._discard()
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "poise_audio.prosody_process"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, close_fds=True,
            )
            run_nicer(self._worker.pid, self.nice)
        return self._worker

    def _discard(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.stdin.close()  # the worker exits when its requests end
        try:
            worker.wait(5)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        worker.stdout.close()


def _serve() -> None:
    """The worker: answer requests from stdin on stdout until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops it by closing its stdin
    requests = sys.stdin.buffer
    # Only answers go to the parent: whatever a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        try:
            if request[0] == "ready":
                answer = ("ok", None)
            else:
                answer = ("ok", measure_prosody(*request[1:]))
        except Exception as exc:  # noqa: BLE001 - the caller raises it as its own
            answer = ("error", exc if _round_trips(exc) else RuntimeError(f"{type(exc).__name__}: {exc}"))
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


def _round_trips(exc: Exception) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means "send it as text"
        return False
    return True


if __name__ == "__main__":
    _serve()
