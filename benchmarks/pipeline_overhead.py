"""Pipeline figures: Prefect overhead, cached re-runs, a 10-minute video against ffmpeg afftdn.

Starts its own local ``prefect server start`` (a private PREFECT_HOME under
benchmarks/out/) and prints one table:

- overhead per file: wall time of the denoise-file flow minus the time of the
  same steps called directly (the tasks' own functions, no Prefect), on short
  real clips; target <= 1.5 s;
- a cached re-run of an unchanged file; target <= 1 s;
- ``destatic run`` on a 10-minute 640x360 h264/aac video against
  ``ffmpeg -i in.mp4 -af afftdn -c:v copy out.mp4`` on the same file in the
  same run, the two alternated ``--repeat`` times, the run with the median
  ratio shown, with ``--method`` (logmmse, passed explicitly: the classic
  path of issue 14, whose target is <= 1.2x; the learned default has its
  figures in benchmarks/unattended.py);
- a cold ``destatic run`` of a 3-second clip with the embedded server (no
  PREFECT_API_URL), with a fresh and with a warm PREFECT_HOME.

Usage: ``python benchmarks/pipeline_overhead.py [--minutes 10] [--skip-long] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO_ROOT.parent / "shared" / "media"
OUT = REPO_ROOT / "benchmarks" / "out" / "pipeline"
CLIPS = ("video/bbaf2n.mpg", "video/brbk7n.mpg", "video/lbax4n.mpg", "video/lbbc2a.mpg", "video/pwij3p.mpg")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESTATIC_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        DO_NOT_TRACK="1",
    )
    return env


def start_server(prefect_home: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start ``prefect server start`` on a free port, logging to `log_path`; return it and its API URL once healthy."""
    port = _free_port()
    env = base_env(prefect_home)
    log = open(log_path, "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise RuntimeError(f"prefect server did not start; see {log_path}")


def stop_server(server: subprocess.Popen) -> None:
    """Stop a server :func:`start_server` started: terminate, then kill after 20 s."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def make_long_video(path: Path, minutes: float) -> None:
    """A 640x360 h264 + aac (48 kHz stereo) test video: a tone sweep under hiss and hum."""
    import imageio_ffmpeg

    seconds = int(minutes * 60)
    audio = (
        "aevalsrc='0.2*sin(2*PI*(220+110*sin(2*PI*t/7))*t)+0.03*sin(2*PI*50*t)"
        f"|0.2*sin(2*PI*(330+90*sin(2*PI*t/5))*t)+0.03*sin(2*PI*50*t)':s=48000:d={seconds}"
    )
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", audio,
        "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.05:sample_rate=48000:duration={seconds}",
        "-filter_complex", "[2:a]aformat=channel_layouts=stereo[n];[1:a][n]amix=inputs=2:normalize=0[a]",
        "-map", "0:v", "-map", "[a]",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28", "-g", "250",
        "-c:a", "aac", "-b:a", "160k", str(path),
    ]
    subprocess.run(command, check=True)


def timed(command: list[str], env: dict[str, str]) -> Clock:
    """Run a command; its wall time and CPU time (it and its children)."""
    with Clock() as clock:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return clock


def direct_steps(source: Path, work: Path) -> float:
    """The pipeline's steps called directly (destatic.steps: no Prefect, no caching)."""
    from destatic import steps
    from destatic.settings import load_settings

    settings = load_settings()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    audio = steps.extract.run(source, work / "audio.wav")
    method = settings.suppression.method
    noise = steps.profile.run(audio, work / "profile.npz", settings.noise.request(method), method=method)
    gains = steps.subtract.run(audio, noise, work / "gains.npy", method, settings.suppression.options())
    cleaned = steps.inverse.run(audio, gains, noise, work / "cleaned.wav")
    steps.remux.run(source, audio, cleaned, work / f"out{source.suffix}")
    return time.perf_counter() - started


def afftdn_command(video: Path, output: Path) -> list[str]:
    """The peer every whole-run figure is a ratio to: ``ffmpeg -i VIDEO -af afftdn -c:v copy OUTPUT``."""
    import imageio_ffmpeg

    return [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-af", "afftdn", "-c:v", "copy", str(output)]


def step_seconds(work_root: Path) -> dict[str, float]:
    """Step times of the one run in `work_root`, from its ``last-run.json``."""
    from destatic.steps.report_page import LAST_RUN

    (record,) = work_root.glob(f"*/{LAST_RUN}")
    return json.loads(record.read_text())["step_seconds"]


def _bare_encode_command(work_root: Path, output: Path) -> list[str]:
    """ffmpeg encoding the run's cleaned WAV as the remux step does (AAC, the remuxed file's audio bitrate)."""
    import imageio_ffmpeg

    from destatic.media import probe

    (cleaned,) = work_root.glob("*/inverse-*.wav")
    (remuxed,) = work_root.glob("*/remux-*.mp4")
    bitrate = next(s.bitrate for s in probe(remuxed).streams if s.kind == "audio")
    return [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(cleaned),
            "-c:a", "aac", "-b:a", str(bitrate), str(output)]


def _cpu() -> float:
    """CPU seconds of this process and its finished children (ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU time of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu


def flow_overhead(clips: list[Path], scratch: Path) -> dict[str, list[Clock]]:
    """Flow, direct steps and cached re-run, wall and CPU time per clip (run in this process)."""
    from destatic.flows import denoise_file
    from destatic.settings import load_settings

    times: dict[str, list[Clock]] = {"flow": [], "direct": [], "cached": []}
    for index, clip in enumerate(clips):
        settings = load_settings(paths={"work": scratch / f"work{index}", "quarantine": scratch / "q"})
        with Clock() as direct:
            direct_steps(clip, scratch / f"direct{index}")
        with Clock() as flow:
            denoise_file(clip, settings, output=scratch / f"flow{index}{clip.suffix}")
        with Clock() as cached:
            denoise_file(clip, settings, output=scratch / f"again{index}{clip.suffix}")
        times["direct"].append(direct)
        times["flow"].append(flow)
        times["cached"].append(cached)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long video")
    parser.add_argument("--skip-long", action="store_true", help="skip the long-video comparison")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the long-video comparison (the median is shown)")
    parser.add_argument("--method", default="logmmse", help="destatic method of the long-video comparison (default logmmse, passed explicitly)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    prefect_home = OUT / "prefect-home"
    server, api_url = start_server(prefect_home, OUT / "server.log")
    rows: list[tuple[str, str, str, str]] = []
    try:
        os.environ.update(base_env(prefect_home))
        os.environ["PREFECT_API_URL"] = api_url
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        clips = [MEDIA_DIR / rel for rel in CLIPS if (MEDIA_DIR / rel).is_file()]
        if not clips:
            print(f"{MEDIA_DIR} missing: no real clips", file=sys.stderr)
            return 1
        scratch = OUT / "overhead"
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            flow_overhead(clips[:1], OUT / "warm-up")  # imports, first API calls, font cache
            times = flow_overhead(clips, scratch)
        median = {name: (statistics.median(c.wall for c in clocks), statistics.median(c.cpu for c in clocks))
                  for name, clocks in times.items()}
        wall_over = [f.wall - d.wall for f, d in zip(times["flow"], times["direct"])]
        cpu_over = [f.cpu - d.cpu for f, d in zip(times["flow"], times["direct"])]
        rows.append((f"flow on {len(clips)} x 3 s clips, median", f"{median['flow'][0]:.2f} s wall, {median['flow'][1]:.2f} s CPU", "", ""))
        rows.append(("same steps without Prefect, median", f"{median['direct'][0]:.2f} s wall, {median['direct'][1]:.2f} s CPU", "", ""))
        rows.append(("orchestration overhead per file, median wall (max)",
                     f"{statistics.median(wall_over):.2f} s ({max(wall_over):.2f})", "<= 1.5 s",
                     "ok" if statistics.median(wall_over) <= 1.5 else "MISSED"))
        rows.append(("orchestration overhead per file, median CPU (max)",
                     f"{statistics.median(cpu_over):.2f} s ({max(cpu_over):.2f})", "<= 1.5 s",
                     "ok" if statistics.median(cpu_over) <= 1.5 else "MISSED"))
        cached_wall = [c.wall for c in times["cached"]]
        rows.append(("cached re-run of an unchanged file, median wall (max)",
                     f"{median['cached'][0]:.2f} s ({max(cached_wall):.2f})", "<= 1 s",
                     "ok" if median["cached"][0] <= 1.0 else "MISSED"))

        cli = [str(Path(sys.executable).parent / "destatic"), "run"]
        server_env = {**base_env(prefect_home), "PREFECT_API_URL": api_url}
        if not args.skip_long:
            long_video = OUT / "long.mp4"
            started = time.perf_counter()
            make_long_video(long_video, args.minutes)
            print(f"made a {args.minutes:g}-minute video in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            ffmpeg = afftdn_command(long_video, OUT / "afftdn.mp4")
            peers, runs, all_steps = [], [], []
            for attempt in range(args.repeat):  # alternated, so that a slow spell of the machine hits both
                work = OUT / f"work-long{attempt}"
                peers.append(timed(ffmpeg, server_env))
                runs.append(timed([*cli, str(long_video), "--method", args.method, "-o", str(OUT / f"long-clean{attempt}.mp4"), "--work", str(work)], server_env))
                all_steps.append(step_seconds(work))
                if attempt + 1 < args.repeat:
                    shutil.rmtree(work)
            ratios = [run.wall / peer.wall for run, peer in zip(runs, peers)]
            middle = sorted(range(args.repeat), key=lambda i: ratios[i])[args.repeat // 2]
            peer, ours, steps = peers[middle], runs[middle], all_steps[middle]
            last_work = OUT / f"work-long{args.repeat - 1}"
            again = timed([*cli, str(long_video), "--method", args.method, "-o", str(OUT / "long-again.mp4"), "--work", str(last_work)], server_env)
            encode_only = timed(_bare_encode_command(last_work, OUT / "bare-encode.m4a"), server_env)
            rows.append((f"ffmpeg -af afftdn -c:v copy, {args.minutes:g} min video (median run of {args.repeat})",
                         f"{peer.wall:.1f} s wall, {peer.cpu:.1f} s CPU", "", ""))
            rows.append(("destatic run, same video (CLI, local server), wall",
                         f"{ours.wall:.1f} s = {ours.wall / peer.wall:.2f}x afftdn",
                         "<= 1.2x", "ok" if ours.wall / peer.wall <= 1.2 else "MISSED"))
            rows.append(("  every run's ratio, in order", " ".join(f"{ratio:.2f}" for ratio in ratios), "", ""))
            rows.append(("destatic run, same video, CPU", f"{ours.cpu:.1f} s = {ours.cpu / peer.cpu:.2f}x afftdn",
                         "<= 1.2x", "ok" if ours.cpu / peer.cpu <= 1.2 else "MISSED"))
            rows.append(("  its steps, s", " ".join(f"{name} {seconds:.1f}" for name, seconds in steps.items()), "", ""))
            rows.append(("  outside the steps (CLI start, Prefect, the plots' tail, report)",
                         f"{ours.wall - sum(seconds for name, seconds in steps.items() if name != 'plots'):.1f} s", "", ""))
            rows.append(("bare ffmpeg AAC encode of the cleaned audio, same bitrate",
                         f"{encode_only.wall:.1f} s = {encode_only.wall / peer.wall:.2f}x afftdn", "", ""))
            rows.append(("destatic run again, cached (CLI process)", f"{again.wall:.1f} s wall, {again.cpu:.1f} s CPU", "", ""))

        clip = clips[0]
        fresh_home = OUT / "cold-home"
        cold_env = {**base_env(fresh_home), "DESTATIC_RUNTIME__SERVER": "embedded"}  # not the default background server, which would outlive the benchmark
        first = timed([*cli, str(clip), "-o", str(OUT / f"cold1{clip.suffix}"), "--work", str(OUT / "work-cold1")], cold_env)
        warm = timed([*cli, str(clip), "-o", str(OUT / f"cold2{clip.suffix}"), "--work", str(OUT / "work-cold2")], cold_env)
        rows.append(("cold destatic run, 3 s clip, embedded server, fresh PREFECT_HOME",
                     f"{first.wall:.1f} s wall, {first.cpu:.1f} s CPU", "", ""))
        rows.append(("cold destatic run, 3 s clip, embedded server, warm PREFECT_HOME",
                     f"{warm.wall:.1f} s wall, {warm.cpu:.1f} s CPU", "", ""))
    finally:
        stop_server(server)

    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores")
    print(f"{'figure':<{width}}  {'measured':<34}  {'target':<9}  status")
    for name, value, target, status in rows:
        print(f"{name:<{width}}  {value:<34}  {target:<9}  {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
