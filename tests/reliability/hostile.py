"""A catalogue of hostile and broken inputs for the inbox watcher, as data.

Each :class:`Case` names one file (or folder, link, FIFO...) dropped into an
inbox, a builder that writes it there from generated media, and the outcome
the watcher must reach:

``processed``
    Cleaned into the outbox under the same relative path; the original moved to ``done/``.
``quarantined``
    Moved to quarantine beside ``NAME.error.txt`` whose reason holds `reason`.
``ignored``
    Not a file the watcher takes (a folder named like a video): left where it is.
``deferred``
    Still being written during the scan: left in the inbox, processed by a later scan.
``vanished``
    Deleted while its run was under way: reported as failed, nothing written, the watcher goes on.
``retried``
    Failed for a reason that is not its content (read-only outbox, full disk): left in the
    inbox untouched, its failure counted, reported as failed with `reason`, nothing written.

Cases that need a world of their own (a read-only outbox, a full disk, an
unprivileged watcher) name a `batch`; the others all run in one ``main`` batch.
Every input is generated here with ffmpeg's synthetic sources or numpy: no
media is copied into the repository.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

Outcome = Literal["processed", "quarantined", "ignored", "deferred", "vanished", "retried"]
BATCHES = ("main", "readonly-outbox", "full-disk-work", "full-disk-outbox", "unprivileged")
SEED = 20261123
SECRET_TOKEN = b"DESTATIC-SECRET-7f3a91c2e4b8d6a0"


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(*args: str | bytes | os.PathLike[str]) -> None:
    """Run bare ffmpeg (errors only); raise with its stderr if it fails."""
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {args!r} failed: {done.stderr.decode('utf-8', 'replace')}")


def tone_expr(channels: int = 1) -> str:
    """An aevalsrc expression per channel: a tone over steady hiss."""
    return "|".join(f"0.3*sin(2*PI*{330 + 110 * c}*t)+0.05*(random({c})*2-1)" for c in range(channels))


class Listener:
    """A loopback TCP server that counts the connections made to it (none are allowed)."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/secret.wav"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.close()


@dataclass
class Context:
    """What builders share: a folder outside the inbox with the secrets, cached base media, a listener."""

    outside: Path
    listener: Listener
    _assets: dict[str, bytes] = field(default_factory=dict)

    @property
    def secret_wav(self) -> Path:
        return self.outside / "secret.wav"

    @property
    def secret_text(self) -> Path:
        return self.outside / "secret.txt"

    def secret_samples(self) -> bytes:
        """A stretch of the secret WAV's sample bytes: must appear in no output."""
        data = self.secret_wav.read_bytes()
        return data[-4096:-2048]

    def asset(self, name: str) -> bytes:
        """Bytes of a generated base file, made once per context."""
        if name not in self._assets:
            target = self.outside / "assets" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            ASSETS[name](target)
            self._assets[name] = target.read_bytes()
        return self._assets[name]


def make_context(root: Path) -> Context:
    """A context whose outside folder is `root`/outside, with a secret WAV and text file."""
    outside = root / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    sf.write(outside / "secret.wav", rng.uniform(-0.5, 0.5, (16000, 1)).astype(np.float32), 16000, subtype="FLOAT")
    (outside / "secret.txt").write_bytes(SECRET_TOKEN + b"\n")
    return Context(outside=outside, listener=Listener())


# --- base media ---------------------------------------------------------------


def _wav(target: Path, *, rate: int = 16000, channels: int = 1, seconds: float = 1.0, codec: str = "pcm_s16le") -> None:
    run_ffmpeg("-f", "lavfi", "-i", f"aevalsrc={tone_expr(channels)}:s={rate}:d={seconds}", "-c:a", codec, target)


def _mp4(target: Path, *, faststart: bool = False, audio: bool = True, seconds: float = 2.0) -> None:
    inputs = ["-f", "lavfi", "-i", f"testsrc2=s=64x48:r=10:d={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"aevalsrc={tone_expr(1)}:s=16000:d={seconds}", "-c:a", "aac", "-b:a", "64k"]
    flags = ["-movflags", "+faststart"] if faststart else []
    run_ffmpeg(*inputs, "-c:v", "mpeg4", "-q:v", "8", *flags, "-f", "mp4", target)


def _mpg(target: Path) -> None:
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2",
        "-f", "lavfi", "-i", f"aevalsrc={tone_expr(2)}:s=44100:d=2",
        "-c:v", "mpeg1video", "-c:a", "mp2", "-b:a", "128k", "-f", "mpeg", target,
    )


def _mkv(target: Path) -> None:
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1",
        "-f", "lavfi", "-i", f"aevalsrc={tone_expr(2)}:s=48000:d=1",
        "-c:v", "mpeg4", "-c:a", "flac", "-f", "matroska", target,
    )


ASSETS: dict[str, Callable[[Path], None]] = {
    "tone.wav": _wav,
    "clip.mp4": _mp4,
    "faststart.mp4": lambda t: _mp4(t, faststart=True),
    "no-audio.mp4": lambda t: _mp4(t, audio=False, seconds=1.0),
    "clip.mpg": _mpg,
    "clip.mkv": _mkv,
    "8k-mono.wav": lambda t: _wav(t, rate=8000),
    "4k-mono.wav": lambda t: _wav(t, rate=4000),
    "96k-6ch.flac": lambda t: _wav(t, rate=96000, channels=6, seconds=0.5, codec="flac"),
    "48k-stereo-3s.wav": lambda t: _wav(t, rate=48000, channels=2, seconds=3.0),
}


# --- builders -----------------------------------------------------------------

Builder = Callable[[Path, Context], None]


def write_bytes(data: bytes | Callable[[Context], bytes]) -> Builder:
    def build(target: Path, ctx: Context) -> None:
        target.write_bytes(data(ctx) if callable(data) else data)

    return build


def asset(name: str) -> Builder:
    return write_bytes(lambda ctx: ctx.asset(name))


def truncated(name: str, fraction: float) -> Builder:
    return write_bytes(lambda ctx: ctx.asset(name)[: int(len(ctx.asset(name)) * fraction)])


def _without_moov(ctx: Context) -> bytes:
    data = ctx.asset("clip.mp4")
    at = data.find(b"moov")
    assert at > 4, "the base mp4 has no moov atom after its data"
    return data[: at - 4]


def _float_wav(samples: np.ndarray, rate: int) -> Builder:
    def build(target: Path, ctx: Context) -> None:
        with open(target, "wb") as handle:
            sf.write(handle, samples, rate, subtype="FLOAT", format="WAV")

    return build


def _nan_inf() -> np.ndarray:
    audio = np.random.default_rng(SEED).uniform(-0.3, 0.3, 16000).astype(np.float32)
    audio[100::997] = np.nan
    audio[500::1999] = np.inf
    audio[900::2999] = -np.inf
    return audio


def _square() -> np.ndarray:
    t = np.arange(16000) / 16000
    return np.where(np.sin(2 * np.pi * 100 * t) >= 0, 1.0, -1.0).astype(np.float32)


def _lying_duration(ctx: Context) -> bytes:
    """A 16-bit WAV whose RIFF and data sizes claim ten times the samples it holds."""
    data = bytearray(ctx.asset("tone.wav"))
    at = data.find(b"data")
    size = int.from_bytes(data[at + 4 : at + 8], "little")
    data[at + 4 : at + 8] = (size * 10).to_bytes(4, "little")
    data[4:8] = (len(data) - 8 + size * 9).to_bytes(4, "little")
    return bytes(data)


def _mkv_claiming_an_hour(ctx: Context) -> bytes:
    """The base mkv with its segment Duration element (8-byte float, ms) set to one hour."""
    data = bytearray(ctx.asset("clip.mkv"))
    at = data.find(b"\x44\x89\x88")
    assert 0 < at < 4096, "no 8-byte Duration element in the mkv header"
    data[at + 3 : at + 11] = struct.pack(">d", 3_600_000.0)
    return bytes(data)


def _hls(target: Callable[[Context], str]) -> Builder:
    return write_bytes(
        lambda ctx: (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:1.0,\n{target(ctx)}\n#EXT-X-ENDLIST\n"
        ).encode()
    )


def _concat(target: Callable[[Context], str]) -> Builder:
    return write_bytes(lambda ctx: f"ffconcat version 1.0\nfile '{target(ctx)}'\n".encode())


def _symlink_outside(target: Path, ctx: Context) -> None:
    target.symlink_to(ctx.secret_wav)


def _symlink_folder_outside(target: Path, ctx: Context) -> None:
    target.symlink_to(ctx.outside, target_is_directory=True)


def _folder(target: Path, ctx: Context) -> None:
    target.mkdir()


def _fifo(target: Path, ctx: Context) -> None:
    os.mkfifo(target)


def _socket(target: Path, ctx: Context) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.fsencode(target))
    server.close()


def _unreadable(target: Path, ctx: Context) -> None:
    target.write_bytes(ctx.asset("tone.wav"))
    target.chmod(0)


# --- actions during the scan ----------------------------------------------------

During = Callable[[Path, Path, threading.Event], None]


def keep_growing(target: Path, work: Path, stop: threading.Event) -> None:
    """Append to `target` every 50 ms until told to stop (a copy still arriving)."""
    with open(target, "ab") as handle:
        while not stop.is_set():
            handle.write(b"\0" * 3200)
            handle.flush()
            stop.wait(0.05)


def delete_when_started(target: Path, work: Path, stop: threading.Event) -> None:
    """Once the run of `target` has made its work folder, delete the claimed file."""
    prefix = target.stem.lower()
    inbox = target.parent
    while not stop.is_set():
        if work.is_dir() and any(p.name.startswith(prefix) for p in work.iterdir()):
            for claimed in (inbox / ".processing").glob(f"*/files/{target.name}"):
                claimed.unlink(missing_ok=True)
                return
        stop.wait(0.005)


# --- the catalogue ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile input: where it goes in the inbox, how it is made, what must happen.

    Attributes
    ----------
    name : str
        Short id.
    relative : Path
        Its path under the inbox.
    build : callable
        ``build(path, ctx)`` writes it.
    outcome : Outcome
        What the watcher must do with it (see the module docstring).
    reason : str
        For ``quarantined``: a substring of the reason (case-insensitive).
    what : str
        One line for the reliability table.
    batch : str
        The world it runs in (one of :data:`BATCHES`).
    during : callable or None
        ``during(path, work_dir, stop)``, run in a thread while the watcher scans.
    """

    name: str
    relative: Path
    build: Builder
    outcome: Outcome
    what: str
    reason: str = ""
    batch: str = "main"
    during: During | None = None


NON_UTF8_NAME = Path(os.fsdecode(b"caf\xe9-\xff.wav"))

CASES: tuple[Case, ...] = (
    Case("control-mp4", Path("control.mp4"), asset("clip.mp4"), "processed", "a plain mp4 (mpeg4 + aac), the control"),
    Case("empty-file", Path("empty.mp4"), write_bytes(b""), "quarantined", "0-byte file named .mp4", "empty"),
    Case("random-bytes", Path("random.mp4"), write_bytes(np.random.default_rng(SEED).bytes(8192)), "quarantined",
         "8 KiB of random bytes named .mp4", "not media"),
    Case("text-as-mp3", Path("notes.mp3"), write_bytes(b"hello, this is not audio\n" * 40), "quarantined",
         "a text file named .mp3", "media"),
    Case("truncated-10", Path("trunc10.mp4"), truncated("faststart.mp4", 0.10), "quarantined",
         "mp4 (moov first) cut at 10 %", "truncated"),
    Case("truncated-50", Path("trunc50.mp4"), truncated("faststart.mp4", 0.50), "quarantined",
         "mp4 (moov first) cut at 50 %", "truncated"),
    Case("truncated-90", Path("trunc90.mp4"), truncated("faststart.mp4", 0.90), "quarantined",
         "mp4 (moov first) cut at 90 %", "truncated"),
    Case("no-moov", Path("no-moov.mp4"), write_bytes(_without_moov), "quarantined",
         "mp4 whose recording stopped before the moov atom", "moov"),
    Case("header-only", Path("header-only.mkv"), truncated("clip.mkv", 0.02), "quarantined",
         "mkv cut to its first 2 %", "truncated"),
    Case("no-audio", Path("no-audio.mp4"), asset("no-audio.mp4"), "quarantined", "video without an audio stream",
         "no audio stream"),
    Case("all-zero-audio", Path("zeros.wav"), _float_wav(np.zeros(16000, np.float32), 16000), "processed",
         "1 s of digital silence"),
    Case("one-sample", Path("one-sample.wav"), _float_wav(np.array([0.25], np.float32), 16000), "processed",
         "a WAV holding one sample"),
    Case("8k-mono", Path("8k-mono.wav"), asset("8k-mono.wav"), "processed", "8 kHz mono 16-bit WAV"),
    Case("96k-6ch", Path("96k-6ch.flac"), asset("96k-6ch.flac"), "processed", "96 kHz 6-channel FLAC"),
    Case("4k-mono", Path("4k-mono.wav"), asset("4k-mono.wav"), "quarantined", "4 kHz WAV, below the 8 kHz the DSP takes",
         "sample_rate"),
    Case("square-full-scale", Path("square.wav"), _float_wav(_square(), 16000), "processed",
         "full-scale 100 Hz square wave"),
    Case("nan-inf", Path("nan-inf.wav"), _float_wav(_nan_inf(), 16000), "quarantined",
         "float WAV with NaN, +inf and -inf samples", "nan"),
    Case("wav-header-lies", Path("lying.wav"), write_bytes(_lying_duration), "quarantined",
         "WAV header claiming 10x the samples present (looks truncated)", "truncated"),
    Case("mkv-duration-lies", Path("lying.mkv"), write_bytes(_mkv_claiming_an_hour), "processed",
         "Matroska header claiming 1 hour, holding 1 s"),
    Case("wav-named-mp4", Path("really-a-wav.mp4"), asset("tone.wav"), "processed",
         "WAV data under a .mp4 name"),
    Case("upper-case-suffix", Path("LOUD.WAV"), asset("tone.wav"), "processed", "suffix in capitals (.WAV)"),
    Case("mpeg-ps", Path("clip.mpg"), asset("clip.mpg"), "processed", "MPEG-PS (mpeg1video + mp2)"),
    Case("mkv-flac", Path("sub/dir/clip.mkv"), asset("clip.mkv"), "processed", "Matroska with FLAC audio in a subfolder"),
    Case("name-leading-dash", Path("-y -i.wav"), asset("tone.wav"), "processed", "name starting with '-' (an option to ffmpeg)"),
    Case("name-spaces", Path("a name  with   spaces.wav"), asset("tone.wav"), "processed", "name with spaces"),
    Case("name-quotes", Path("it's \"quoted\" `x`.wav"), asset("tone.wav"), "processed", "name with quotes and backticks"),
    Case("name-newline", Path("new\nline.wav"), asset("tone.wav"), "processed", "name with a newline"),
    Case("name-non-utf8", NON_UTF8_NAME, asset("tone.wav"), "processed", "name with bytes that are not UTF-8"),
    Case("name-shell", Path("$(touch PWNED); rm -rf x.wav"), asset("tone.wav"), "processed", "name with shell syntax"),
    Case("name-240-bytes", Path("n" * 236 + ".wav"), asset("tone.wav"), "processed", "a 240-byte name (limit is 255)"),
    Case("symlink-outside", Path("link.wav"), _symlink_outside, "quarantined",
         "symlink to a WAV outside the inbox (refused)", "symbolic link"),
    Case("folder-named-video", Path("folder.mp4"), _folder, "ignored", "an empty folder named like a video"),
    Case("symlinked-folder", Path("elsewhere"), _symlink_folder_outside, "ignored",
         "symlink to a folder outside the inbox (not followed)"),
    Case("bad-name-newline", Path("bad\nname.mp4"), write_bytes(b"\0" * 4096), "quarantined",
         "4 KiB of zeros named with a newline", "not media"),
    Case("fifo", Path("fifo.wav"), _fifo, "quarantined", "a FIFO named .wav (a read would block forever)",
         "not a regular file"),
    Case("unix-socket", Path("socket.mp4"), _socket, "quarantined", "a Unix socket named .mp4", "not a regular file"),
    Case("growing", Path("growing.wav"), asset("tone.wav"), "deferred", "a file still being written during the scan",
         during=keep_growing),
    Case("deleted-mid-run", Path("zz-deleted.mpg"), asset("clip.mpg"), "vanished",
         "deleted while its run is under way", during=delete_when_started),
    Case("hls-local-file", Path("hls-local.mp4"), _hls(lambda ctx: str(ctx.secret_wav)), "quarantined",
         "HLS playlist named .mp4 pointing at a local secret", "not media"),
    Case("hls-file-url", Path("hls-file-url.avi"), _hls(lambda ctx: f"file://{ctx.secret_text}"), "quarantined",
         "HLS playlist named .avi with a file:// URL", "not media"),
    Case("hls-http", Path("hls-http.mp4"), _hls(lambda ctx: ctx.listener.url), "quarantined",
         "HLS playlist named .mp4 pointing at a loopback URL", "not media"),
    Case("concat-local-file", Path("concat-local.avi"), _concat(lambda ctx: str(ctx.secret_wav)), "quarantined",
         "ffconcat list named .avi pointing at a local secret", "not allowed"),
    Case("concat-http", Path("concat-http.mp4"), _concat(lambda ctx: ctx.listener.url), "quarantined",
         "ffconcat list named .mp4 pointing at a loopback URL", "not allowed"),
    Case("readonly-outbox", Path("ro.wav"), asset("tone.wav"), "retried", "outbox on a read-only file system",
         "read-only file system", batch="readonly-outbox"),
    Case("full-disk-work", Path("big-for-work.wav"), asset("48k-stereo-3s.wav"), "retried",
         "work folder on a 256 KiB file system", "no space left", batch="full-disk-work"),
    Case("full-disk-outbox", Path("big-for-outbox.wav"), asset("48k-stereo-3s.wav"), "retried",
         "outbox on a 64 KiB file system", "no space left", batch="full-disk-outbox"),
    Case("unreadable", Path("locked.wav"), _unreadable, "quarantined",
         "mode 000, watcher without root's capabilities (root reads anything)", "permission denied", batch="unprivileged"),
    Case("control-unprivileged", Path("fine.wav"), asset("tone.wav"), "processed",
         "a good file beside the unreadable one", batch="unprivileged"),
)


def cases_in(batch: str) -> list[Case]:
    return [case for case in CASES if case.batch == batch]


def build_batch(batch: str, inbox: Path, ctx: Context) -> list[Case]:
    """Write the inputs of `batch` into `inbox`; returns its cases."""
    chosen = cases_in(batch)
    for case in chosen:
        target = inbox / case.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        case.build(target, ctx)
    return chosen


def one_line(name: str) -> str:
    """A file name as a one-line note should show it: newlines escaped, bytes that are not UTF-8 as \\x.."""
    return os.fsencode(name).decode("utf-8", "backslashreplace").replace("\n", "\\n")


def walk_all(root: Path) -> Iterator[Path]:
    """Every entry under `root`, hidden ones included, links not followed."""
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield Path(folder) / name


def age(paths: list[Path], seconds: float) -> None:
    """Set the mtime of `paths` `seconds` in the past (links themselves, not their targets)."""
    when = time.time() - seconds
    for path in paths:
        os.utime(path, (when, when), follow_symlinks=False)
