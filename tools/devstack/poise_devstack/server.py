"""What every local server of the devstack shares: a process, a private folder, a lifecycle."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import TracebackType

from poise_devstack.processes import ManagedProcess, tail_file

log = logging.getLogger(__name__)


class LocalServer:
    """Base of KafkaBroker, PostgresServer and TritonServer.

    Subclasses set ``_process`` in ``start()`` and may override ``_after_stop`` (cleanup
    after the process is gone) and ``_forget`` (state to drop with the folder).
    """

    kind = "server"
    stop_timeout = 20.0
    _process: ManagedProcess | None = None
    _work_dir: Path | None = None
    _owns_work_dir = False

    def start(self) -> "LocalServer":  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the server process while it runs, else None."""
        return self._process.pid if self._process is not None else None

    @property
    def work_dir(self) -> Path | None:
        """The server's private folder (config, data, logs)."""
        return self._work_dir

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log ('' before it has one)."""
        return tail_file(self.log_path, lines) if self._work_dir is not None else ""

    @property
    def log_path(self) -> Path:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> None:
        """Stop cleanly (the server's own stop signal, SIGKILL after ``timeout`` s). Keeps its data.

        Idempotent.
        """
        if self._process is not None:
            code = self._process.terminate(self.stop_timeout if timeout is None else timeout)
            self._after_stop()
            log.info("%s stopped (status %s)", self.kind, code)

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash would. Its data stays; start() recovers."""
        if self._process is not None:
            self._process.kill()
            self._after_stop()

    def restart(self, timeout: float | None = None) -> "LocalServer":
        """Stop (if running) and start the same server on the same ports with the same data."""
        self.stop(timeout)
        return self.start()

    def detach(self) -> None:
        """Leave the server running when this interpreter exits (``make up``)."""
        if self._process is not None:
            self._process.detach()

    def close(self) -> None:
        """Stop the server and remove its folder if this object created it."""
        self.stop()
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._forget()

    def _after_stop(self) -> None:
        """Cleanup once the process is gone (e.g. shared memory)."""

    def _forget(self) -> None:
        """Drop state that lived in the removed folder."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
