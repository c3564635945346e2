"""Digests of what every method and noise mode writes on the shared media, to show a redesign changes no byte.

Two layers are covered:

- the library: :func:`destatic.denoise` for each method x each way of naming
  the noise (``auto``, the ``head`` stretch, a ``segment``, a separate noise
  ``file``) x hum ``auto``/``off``, and the residue, on a stereo video's
  audio and on a mono speech+noise mixture;
- the whole command: ``destatic run`` for each method on a short video
  (video output, the audio-only FLAC, the residue), with a fresh work folder
  and the embedded server (``PREFECT_HOME`` in a temporary folder).

Usage::

    python benchmarks/identical_outputs.py --save before.json     # at the old commit
    python benchmarks/identical_outputs.py --check before.json    # at the new one: exit 1 on any difference

``--skip-cli`` leaves out the command runs (about three minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO_ROOT.parent / "shared" / "media"
VIDEO = MEDIA_DIR / "video" / "chaplin.mp4"
SPEECH = MEDIA_DIR / "speech" / "sp01.wav"
NOISE = MEDIA_DIR / "noise" / "AirConditioner_6.wav"
CLI_VIDEO = MEDIA_DIR / "video" / "bbaf2n.mpg"
SECONDS = 8.0


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _clips() -> dict[str, tuple[np.ndarray, int, np.ndarray]]:
    """Each clip's audio, rate and a separate noise recording of the same channels."""
    from destatic.media.audio import read_audio

    video, video_rate = read_audio(VIDEO)
    video = video[: int(SECONDS * video_rate)]
    speech, speech_rate = read_audio(SPEECH)
    noise, noise_rate = read_audio(NOISE)
    if noise_rate != speech_rate:
        import librosa

        noise = librosa.resample(noise.T, orig_sr=noise_rate, target_sr=speech_rate).T
    rng = np.random.default_rng(7)
    lead = int(1.0 * speech_rate)
    mono_speech = speech.mean(axis=1) if speech.ndim == 2 else speech
    mono_noise = (noise.mean(axis=1) if noise.ndim == 2 else noise).astype(np.float32)
    padded = np.concatenate([np.zeros(lead, np.float32), mono_speech.astype(np.float32)])
    bed = mono_noise[: padded.shape[0]] * 0.3 + rng.standard_normal(padded.shape[0]).astype(np.float32) * 0.003
    mixture = (padded + bed).astype(np.float32)
    video_noise = video[: int(1.0 * video_rate)].copy()
    return {
        "video": (video.astype(np.float32), video_rate, video_noise),
        "speech": (mixture, speech_rate, mono_noise[-speech_rate * 2 :]),
    }


def library_digests() -> dict[str, str]:
    """One digest per (clip, method, noise, hum, residue) through :func:`destatic.denoise`."""
    from destatic import denoise
    from destatic.dsp.choices import METHODS, learned_available

    digests: dict[str, str] = {}
    for clip, (audio, rate, noise_audio) in _clips().items():
        noises = {"auto": None, "segment": (0.0, 0.9), "file": noise_audio}
        for method in METHODS:
            if method in ("deepfilter", "hybrid") and not learned_available():
                continue
            for noise_name, noise in noises.items():
                for hum in ("auto", "off"):
                    out = denoise(audio, rate, noise=noise, method=method, hum=hum)
                    digests[f"denoise/{clip}/{method}/{noise_name}/hum-{hum}"] = _digest(out)
            digests[f"denoise/{clip}/{method}/auto/residue"] = _digest(
                denoise(audio, rate, method=method, residue=True)
            )
            digests[f"denoise/{clip}/{method}/auto/n_jobs-1"] = _digest(denoise(audio, rate, method=method, n_jobs=1))
    return digests


def _decoded(path: Path) -> str:
    """A digest of a file's decoded audio samples (containers may hold timestamps)."""
    from destatic.media.audio import read_audio

    samples, rate = read_audio(path)
    return f"{rate}:{_digest(samples)}"


def cli_digests() -> dict[str, str]:
    """One digest per (method, output kind) of a whole ``destatic run`` with a fresh work folder."""
    destatic = Path(sys.executable).with_name("destatic")
    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="destatic-identical-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PREFECT_HOME": str(root / "prefect"),
            "XDG_STATE_HOME": str(root / "state"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        env.pop("PREFECT_API_URL", None)
        try:
            _run_methods(root, env, destatic, digests)
        finally:  # the background server the runs started goes with the temporary folder, even after a failure
            subprocess.run([str(destatic), "server", "stop"], env=env, cwd=root, capture_output=True, timeout=120)
    return digests


def _run_methods(root: Path, env: dict[str, str], destatic: Path, digests: dict[str, str]) -> None:
    """Each method's ``destatic run`` commands, their outputs' digests into `digests`."""
    from destatic.dsp.choices import METHODS, learned_available

    for method in METHODS:
        if method in ("deepfilter", "hybrid") and not learned_available():
            continue
        for kind, extra in {
            "video": ["-o", str(root / f"{method}.mpg")],
            "flac": ["--audio-only", "-o", str(root / f"{method}.flac"), "--residue", str(root / f"{method}-res.flac")],
            "segment": ["--noise-start", "0", "--noise-end", "0.5", "-o", str(root / f"{method}-seg.wav")],
            "head": ["--profile", "head", "--format", "wav", "-o", str(root / f"{method}-head.wav")],
        }.items():
            work = root / f"work-{method}-{kind}"
            command = [str(destatic), "run", str(CLI_VIDEO), "--method", method, "--work", str(work), *extra]
            result = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        digests[f"cli/{method}/video-audio"] = _decoded(root / f"{method}.mpg")
        digests[f"cli/{method}/flac"] = _decoded(root / f"{method}.flac")
        digests[f"cli/{method}/residue"] = _decoded(root / f"{method}-res.flac")
        digests[f"cli/{method}/segment-wav"] = _decoded(root / f"{method}-seg.wav")
        digests[f"cli/{method}/head-wav"] = _decoded(root / f"{method}-head.wav")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, help="write the digests here")
    action.add_argument("--check", type=Path, help="compare with digests saved earlier; exit 1 on a difference")
    parser.add_argument("--skip-cli", action="store_true", help="the library only")
    args = parser.parse_args()
    if not MEDIA_DIR.is_dir():
        print(f"skipped: the shared media folder {MEDIA_DIR} is absent")
        return 0
    digests = library_digests()
    if not args.skip_cli:
        digests.update(cli_digests())
    if args.save:
        args.save.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
        print(f"{len(digests)} digests written to {args.save}")
        return 0
    saved = json.loads(args.check.read_text())
    differ = [key for key in digests if key in saved and saved[key] != digests[key]]
    missing = sorted(set(saved) - set(digests))
    for key in differ:
        print(f"DIFFERENT  {key}: {saved[key]} -> {digests[key]}")
    for key in missing:
        print(f"MISSING    {key}")
    same = len(digests) - len(differ) - len(set(digests) - set(saved))
    print(f"{same} identical, {len(differ)} different, {len(missing)} missing (of {len(saved)} saved)")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main())
