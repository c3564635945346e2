"""Clean a few sample files with the pipeline on Prefect's embedded server.

Uses the real recordings in ``../shared/media`` when present; otherwise
generates a noisy clip (a tone sweep under white hiss and 50 Hz hum, in an mp4
with a test-pattern video) with numpy and ffmpeg. Prints where the outputs,
reports and Prefect artifacts are. Run through ``make demo``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO_ROOT.parent / "shared" / "media"
OUT = REPO_ROOT / "out" / "demo"
SAMPLES = ("video/chaplin.mp4", "video/bbaf2n.mpg", "pairs/noizeus")

os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _noizeus_file() -> Path | None:
    folder = MEDIA_DIR / "pairs" / "noizeus"
    candidates = sorted(folder.glob("*_sn5.wav")) or sorted(folder.glob("*.wav"))
    return candidates[0] if candidates else None


def real_samples() -> list[Path]:
    """A video of solo piano (no voice), a talking-head mpg and a noisy NOIZEUS sentence, when present."""
    found = [MEDIA_DIR / rel for rel in SAMPLES[:2] if (MEDIA_DIR / rel).is_file()]
    noizeus = _noizeus_file()
    return found + ([noizeus] if noizeus else [])


def generated_sample(folder: Path) -> Path:
    """A 6 s mp4: a test pattern with a tone sweep under hiss and hum."""
    import imageio_ffmpeg

    rate = 48000
    rng = np.random.default_rng(7)
    t = np.arange(6 * rate) / rate
    sweep = 0.3 * np.sin(2 * np.pi * (300 * t + 60 * t**2)) * (t > 1.0)
    hum = sum(0.02 / k * np.sin(2 * np.pi * 50 * k * t) for k in range(1, 6))
    noisy = np.stack([sweep + hum + 0.03 * rng.standard_normal(t.size) for _ in range(2)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    wav, mp4 = folder / "generated.wav", folder / "generated-noisy.mp4"
    sf.write(wav, noisy.astype(np.float32), rate, subtype="FLOAT")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=6", "-i", str(wav),
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest", str(mp4),
    ]
    subprocess.run(command, check=True)
    wav.unlink()
    return mp4


def start_embedded_server() -> float:
    """Start the temporary server the flows will use (Prefect keeps one per process); return the seconds it took."""
    from prefect.server.api.server import SubprocessASGIServer

    started = time.perf_counter()
    SubprocessASGIServer().start(timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    return time.perf_counter() - started


def main() -> int:
    from destatic.flows import denoise_file
    from destatic.workspace import work_dir_for
    from destatic.steps.report_page import LAST_RUN
    from destatic.settings import load_settings

    OUT.mkdir(parents=True, exist_ok=True)
    samples = real_samples() if MEDIA_DIR.is_dir() else []
    if not samples:
        print(f"{MEDIA_DIR} not found: generating a noisy clip")
        samples = [generated_sample(OUT / "input")]
    settings = load_settings(paths={"work": OUT / "work", "quarantine": OUT / "quarantine"})
    print(f"cleaning {len(samples)} file(s) with Prefect's embedded server (PREFECT_HOME={os.environ['PREFECT_HOME']})")
    print(f"Prefect's embedded server started in {start_embedded_server():.1f} s (not counted in the times below)")
    failed = 0
    for source in samples:
        started = time.perf_counter()
        target = OUT / f"{source.stem}-clean{source.suffix}"
        try:
            denoise_file(source, settings, output=target)
        except Exception as error:  # the demo reports and goes on
            failed += 1
            print(f"FAILED {source.name}: {error}")
            continue
        record = json.loads((work_dir_for(source, settings) / LAST_RUN).read_text())
        print(f"\n{source.name}  ({time.perf_counter() - started:.1f} s)")
        print(f"  output:    {target}")
        print(f"  {speech_quality_headline(record.get('speech_quality'), record['reduction_db'])}")
        print(f"  report:    {record['report']}")
        print(f"  listen:    {record['report_html']}  (before/after players; previews for a video)")
        print(f"  plots:     {record['profile_plot']}")
        print(f"             {record['spectrogram_plot']}")
        print(f"  artifact:  {record['artifact_key']}")
    print("\nPrefect artifacts (markdown reports with the plots inline):")
    startup = f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS={os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS']}"
    print(f"  PREFECT_HOME={os.environ['PREFECT_HOME']} {startup} {Path(sys.executable).parent / 'prefect'} artifact ls")
    ui = f"PREFECT_HOME={os.environ['PREFECT_HOME']} PREFECT_UI_API_URL=http://127.0.0.1:4300/api {Path(sys.executable).parent / 'prefect'} server start --port 4300"
    print(f"  or open the UI: run `{ui}`, browse http://127.0.0.1:4300/artifacts")
    return 1 if failed else 0


def speech_quality_headline(quality: dict | None, reduction_db: float) -> str:
    """The first line said of a cleaned file: how good its speech sounds now, or that it holds no voice to score.

    The noise reduction, measured on the input's quietest stretches, follows:
    on music it is small by design (the music is kept), and said so, so that
    it is not read as a failure.
    """
    if not quality or "output" not in quality:
        return (f"speech:    none found, so no quality score. Music and ambience are kept as they are; only steady noise "
                f"under them is taken out (here {reduction_db:.1f} dB in the quietest stretches). Listen below.")
    output = quality["output"]
    return (f"speech:    quality {output['ovrl']:.2f} of 5 after cleaning, {quality['input']['ovrl']:.2f} before "
            f"(DNSMOS OVRL; background {output['bak']:.2f} of 5); noise {reduction_db:.1f} dB lower in the pauses")


if __name__ == "__main__":
    sys.exit(main())
