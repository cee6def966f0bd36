"""Model inference behind one interface: in-process (``local``) or NVIDIA Triton (``triton://``).

The runners in ``faces`` and ``speech`` hold the only code that calls MediaPipe and
faster-whisper; the local backend calls them in threads, and the Triton model repository's
Python models call the very same runners, so both backends give the same numbers.
"""
