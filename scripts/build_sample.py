"""Build examples/sample_interview.mp4: the Pexels face clip with JFK's public-domain speech.

Both streams are real recordings (see examples/ATTRIBUTION.md). The video is copied as it
is; the speech is encoded to AAC and placed from the start of the clip.

    python scripts/build_sample.py [--media ../shared/media] [--out examples/sample_interview.mp4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]


def build(video_path: Path, speech_path: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(video_path)) as vin, av.open(str(speech_path)) as ain, av.open(str(tmp), "w") as dst:
        vsrc = vin.streams.video[0]
        vdst = dst.add_stream_from_template(vsrc)
        adst = dst.add_stream("aac", rate=44100, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=44100)
        for packet in vin.demux(vsrc):
            if packet.dts is None:
                continue
            packet.stream = vdst
            dst.mux(packet)
        for frame in ain.decode(audio=0):
            for resampled in resampler.resample(frame):
                resampled.pts = None
                dst.mux(adst.encode(resampled))
        for resampled in resampler.resample(None):
            resampled.pts = None
            dst.mux(adst.encode(resampled))
        dst.mux(adst.encode(None))
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "sample_interview.mp4")
    args = parser.parse_args()
    build(args.media / "pexels_face_20s.mp4", args.media / "jfk.flac", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
