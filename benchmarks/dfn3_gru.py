"""DeepFilterNet3's engine with its GRUs in our float16 kernel against onnxruntime's float32 GRUs (the graphs unsplit).

Both engines are :class:`destatic.dsp.dfn3.Dfn3Stream`, ``float16_grus``
True (the default) or False. On 60 s of real speech over air-conditioner
noise (``common.speech_noise_blocks``, one channel) it prints:

- the CPU seconds per second of audio of each (the process's CPU: the
  stream's thread and the caller), the two alternated in one process,
  median of ``--pairs`` pairs, and their ratio;
- how far the float16 engine's output is below the float32 one's, dB;
- each engine's peak resident memory (VmHWM) on ``--memory-minutes`` of audio
  in a fresh process with the DSP child's allocator settings
  (``steps.isolated.memory_environment("steps")``), the classic method's compiled loops
  loaded first (numba and they are in the DSP child whatever the engine).

Run ``python benchmarks/dfn3_gru.py [--pairs N]`` from the checkout; one core
for the stream's thread; about two minutes. Needs ``../shared/media``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import subprocess
import sys
import time

import numpy as np

import common
from destatic.dsp import dfn3
from destatic.steps.isolated import memory_environment

ENGINES = {"float32 onnxruntime GRUs (unsplit)": False, "float16 kernel GRUs (split)": True}


def speech(seconds: float) -> np.ndarray:
    """`seconds` of speech over air-conditioner noise, one channel, whole frames."""
    audio = np.concatenate([block[:, 0] for block in common.speech_noise_blocks(seconds / 60, channels=1)])
    return audio[: audio.size - audio.size % dfn3.FRAME]


def denoised(audio: np.ndarray, float16_grus: bool, block: int = 100 * dfn3.FRAME) -> np.ndarray:
    """The stream's output on `audio`, fed in blocks as the learned step feeds it."""
    stream = dfn3.Dfn3Stream(float16_grus=float16_grus)
    out = [stream.process(audio[start : start + block]) for start in range(0, audio.size, block)]
    return np.concatenate([*out, stream.flush()])


def peak_memory(float16_grus: bool, minutes: float) -> int:
    """VmHWM (KiB) of a fresh process, with the DSP child's allocator settings, running the engine on `minutes`."""
    code = (f"import sys; sys.path.insert(0, {str(common.REPO_ROOT / 'benchmarks')!r}); import dfn3_gru; "
            "from destatic import dsp; dsp.warm_up('logmmse'); "
            f"dfn3_gru.denoised(dfn3_gru.speech({minutes * 60}), {float16_grus}); "
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **memory_environment("steps")},
                          capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="alternated runs of the two engines (median taken)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio timed")
    parser.add_argument("--memory-minutes", type=float, default=3.0, help="audio of the memory runs (0: none)")
    args = parser.parse_args()
    common.require_media()
    audio = speech(args.seconds)
    outputs = {name: denoised(audio, flag) for name, flag in ENGINES.items()}  # loads, compiles, warms
    reference, ours = outputs.values()
    error = np.sum((ours - reference).astype(np.float64) ** 2)
    print(f"float16 output below the float32 one: {10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / error):.1f} dB "
          f"(largest difference {np.abs(ours - reference).max():.2e}, peak {np.abs(reference).max():.2f})")
    samples: dict[str, list[float]] = {name: [] for name in ENGINES}
    load_start = open("/proc/loadavg").read().split()[:3]
    for pair in range(args.pairs):
        names = list(ENGINES) if pair % 2 == 0 else list(ENGINES)[::-1]
        for name in names:
            start = time.process_time()
            denoised(audio, ENGINES[name])
            samples[name].append((time.process_time() - start) / (audio.size / dfn3.RATE))
    load_end = open("/proc/loadavg").read().split()[:3]
    medians = {name: float(np.median(values)) for name, values in samples.items()}
    ratios = [new / old for old, new in zip(*samples.values(), strict=True)]
    print(f"CPU-s per second of audio, {args.seconds:.0f} s, median of {args.pairs} alternated pairs "
          f"(load {load_start} -> {load_end}):")
    for name, value in medians.items():
        print(f"  {name:>36}: {value:.4f} ({', '.join(f'{v:.4f}' for v in samples[name])})")
    print(f"  ratio float16 / float32: {np.median(ratios):.3f} (median of pair ratios; {min(ratios):.3f}-{max(ratios):.3f})")
    if args.memory_minutes:
        print(f"peak RSS (MiB) on {args.memory_minutes:g} min, each in a fresh process with the child's allocator, alternated:")
        peaks: dict[str, list[str]] = {name: [] for name in ENGINES}
        for _ in range(2):
            for name, flag in ENGINES.items():
                peaks[name].append(f"{peak_memory(flag, args.memory_minutes) / 1024:.0f}")
        for name, values in peaks.items():
            print(f"  {name:>36}: {', '.join(values)}")


if __name__ == "__main__":
    main()
