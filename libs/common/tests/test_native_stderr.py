"""Native libraries' log lines are dropped from stderr; everything else passes."""

import subprocess
import sys

SCRIPT = r"""
import os, sys
from poise_common.native_stderr import filter_native_stderr
filter_native_stderr()
os.write(2, b"W0000 00:00:1795674423.705669   11008 face_landmarker_graph.cc:181] Sets acceleration\n")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"INFO: [environment.cc:36] Creating LiteRT environment with options\n")
os.write(2, b"INFO: [a real bracket] is not a native line\n")
os.write(2, b"poise: error: a real message\n")
print("to stderr via python", file=sys.stderr)
os.write(2, b"E1126 06:00:00.000000 123 some_file.cc:9] native error shape\n")
os.write(2, b"no newline at the end")
"""


def run(env_extra: dict) -> str:
    import os

    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, env=env, timeout=60).stderr.decode()


def test_noise_dropped_messages_kept():
    err = run({})
    assert "Sets acceleration" not in err and "TensorFlow Lite" not in err and "native error shape" not in err
    assert "LiteRT" not in err and "INFO: [a real bracket] is not a native line\n" in err
    assert "poise: error: a real message\n" in err
    assert "to stderr via python\n" in err
    assert err.endswith("no newline at the end")


def test_switch_keeps_native_logs():
    err = run({"POISE_NATIVE_LOGS": "1"})
    assert "Sets acceleration" in err
