"""Keep native libraries' start-up chatter off a user's terminal.

MediaPipe and TensorFlow Lite write absl/glog lines ("W0000 ... Feedback manager ...", and
LiteRT's "INFO: [environment.cc:36] ...")
straight to file descriptor 2 from C++ threads, past Python's logging, and offer no switch
that silences them. A process that wants a clean stderr routes fd 2 through a pipe and drops
only lines of those shapes; everything else passes through unchanged.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NATIVE_NOISE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |INFO: Created TensorFlow Lite |INFO: \[[\w.]+:\d+\] |"
    rb"WARNING: Logging before InitGoogle\(\))"
)


def filter_native_stderr() -> None:
    """Install the filter once per process (a no-op when POISE_NATIVE_LOGS=1)."""
    if os.environ.get("POISE_NATIVE_LOGS") == "1" or getattr(filter_native_stderr, "_installed", False):
        return
    filter_native_stderr._installed = True  # type: ignore[attr-defined]
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
                if out:
                    os.write(original, out)
            if pending and not NATIVE_NOISE.match(pending):
                os.write(original, pending)

    thread = threading.Thread(target=pump, name="native-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last writer, so the pump drains and ends
        thread.join(timeout=2)

    atexit.register(restore)
