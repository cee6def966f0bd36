"""What this GPU image finds: CUDA devices (torch, CTranslate2), whisperx, and the face model.

Exit status 0 when CUDA has a device and whisperx's pipeline imports (with the torch,
transformers and pyannote releases it runs on), 1 otherwise: a quick test of a GPU node
(``kubectl run --rm -it --image=poise-gpu-worker ... --limits=nvidia.com/gpu=1``).
"""

from __future__ import annotations

import sys


def whisperx_problem() -> str | None:
    """Why whisperx's pipeline does not import, or None. Finding the package is not enough: a
    transformers or pandas release that refuses this NumPy fails only on import."""
    try:
        import whisperx.asr  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"{type(exc).__name__}: {exc}"
    return None


def main() -> int:
    import ctranslate2
    import torch

    from poise_common.settings import default_models_dir

    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    face_model = default_models_dir() / "face_landmarker.task"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}: {devices or 'no device'}")
    print(f"CTranslate2 {ctranslate2.__version__}: {ctranslate2.get_cuda_device_count()} CUDA device(s)")
    problem = whisperx_problem()
    print(f"whisperx: {'importable' if problem is None else f'not importable ({problem})'}")
    print(f"face model: {'present' if face_model.is_file() else 'missing'} at {face_model}")
    return 0 if devices and problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
