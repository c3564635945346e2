"""An inbox on object storage, against a real S3-compatible server (moto's, on loopback) started here.

The server checks signatures: an IAM user with full rights is made first,
and its keys are the ones the watchers use, so wrong keys are refused as
S3 would refuse them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pipeline.conftest import prefect_harness  # noqa: F401  (fixture)

pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed: pip install -e '.[s3]'")
pytest.importorskip("moto.server", reason="moto[server] (the test extra) is not installed")

ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port with signature checks on; yields the AWS_* variables of a user allowed everything."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    # The first 3 requests (make the user, its policy, its keys) go unchecked; every later one must be signed by a known key.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with log.open("wb") as output:
        server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                  env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="none", aws_secret_access_key="none", region_name="us-east-1")
        iam.create_user(UserName="destatic")
        iam.put_user_policy(UserName="destatic", PolicyName="all", PolicyDocument=ALLOW_ALL)
        key = iam.create_access_key(UserName="destatic")["AccessKey"]
        yield {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture
def bucket(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new bucket of the server, this process's AWS_* variables pointing at it."""
    import s3fs

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"destatic-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    yield name


def _fs() -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def _short_clips(source: Path, folder: Path, count: int) -> list[Path]:
    """`count` different short WAV files cut from a real recording (0.6 s each, from different offsets)."""
    audio, rate = sf.read(source, dtype="int16")
    length = int(0.6 * rate)
    step = max(1, (len(audio) - length) // count)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"clip{index:02d}.wav"
        sf.write(path, audio[index * step:index * step + length], rate, subtype="PCM_16")
        paths.append(path)
    return paths


def _watch_command(inbox: str | Path) -> list[str]:
    return [sys.executable, "-m", "destatic", "watch", str(inbox), "--once"]


def _env(tmp_path: Path, name: str, extra: dict[str, str]) -> dict[str, str]:
    """A watcher's environment: its own work folder, settled files taken at once, the classic wiener method (quick);
    the test session's Prefect server if it has one, else Prefect's temporary server."""
    from prefect.settings import PREFECT_API_URL

    api = {"PREFECT_API_URL": str(PREFECT_API_URL.value())} if PREFECT_API_URL.value() else {}
    return {**os.environ, **api, **extra, "DESTATIC_PATHS__WORK": str(tmp_path / f"work-{name}"), "DESTATIC_WATCH__STABLE_S": "0",
            "DESTATIC_RUNTIME__SERVER": "embedded", "DESTATIC_SUPPRESSION__METHOD": "wiener"}


def test_claims_are_exactly_once_across_watchers(bucket: str) -> None:
    """Watchers of their own connections race for the same 20 objects: each is claimed by exactly one."""
    from destatic import store
    from destatic.settings import load_settings

    settings = load_settings(paths={"inbox": f"s3://{bucket}/inbox/"}, watch={"stable_s": 0})
    fs = _fs()
    for index in range(20):
        fs.pipe_file(f"{bucket}/inbox/f{index:02d}.wav", f"clip {index}".encode())
    won: list[list[str]] = [[], [], [], []]

    def race(slot: int) -> None:
        mine = store.Store(_fs(), f"{bucket}/inbox", settings.paths.inbox)
        ready, _ = store.find_ready(mine, settings)
        won[slot] = [taken.item.relative for item in ready if (taken := store.claim(mine, item)) is not None]

    threads = [threading.Thread(target=race, args=(slot,)) for slot in range(len(won))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = sorted(name for names in won for name in names)
    assert claimed == [f"f{index:02d}.wav" for index in range(20)], won
    again = store.open_store(settings.paths.inbox, settings)
    assert [store.claim(again, item) for item in store.find_ready(again, settings)[0]] == [None] * 20


def test_wrong_credentials_give_one_clear_line(bucket: str, tmp_path: Path) -> None:
    env = _env(tmp_path, "bad", {"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    done = subprocess.run(_watch_command(f"s3://{bucket}/inbox/"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: s3://{bucket}/inbox/: the object store at ") and "refused these credentials" in lines[0], lines


@pytest.mark.usefixtures("prefect_harness")
def test_bad_file_is_quarantined_with_its_reason(bucket: str, speech_wav: Path, rng: np.random.Generator, tmp_path: Path) -> None:
    from destatic.flows import watch_inbox
    from destatic.settings import load_settings

    fs = _fs()
    fs.pipe_file(f"{bucket}/inbox/sub/broken.mp4", rng.bytes(4096))
    fs.put_file(str(speech_wav), f"{bucket}/inbox/good.wav")
    settings = load_settings(paths={"inbox": f"s3://{bucket}/inbox/", "work": tmp_path / "work"}, watch={"stable_s": 0}, runtime={"retry_delay_s": 0},
                             suppression={"method": "wiener"})
    rows = {row["file"]: row for row in watch_inbox(settings)}
    assert rows["sub/broken.mp4"]["status"] == "failed" and rows["sub/broken.mp4"]["quarantined"] == f"s3://{bucket}/quarantine/sub/broken.mp4"
    assert rows["good.wav"]["status"] == "done" and rows["good.wav"]["output"] == f"s3://{bucket}/outbox/good.wav"
    note = fs.cat_file(f"{bucket}/quarantine/sub/broken.mp4.error.txt").decode()
    assert "step: extract" in note and "reason: " in note
    assert fs.cat_file(f"{bucket}/done/good.wav") == speech_wav.read_bytes()
    assert fs.find(f"{bucket}/inbox") == [], "objects or claims left in the inbox"
    assert not (tmp_path / "work" / "store").exists() or list((tmp_path / "work" / "store").iterdir()) == []


def _lines(output: str, status: str) -> list[str]:
    return [line.split(": ", 1)[1].split(" -> ")[0] for line in output.splitlines() if line.startswith(f"{status}: ")]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_two_watchers_take_twenty_files_once_each_identical_to_a_local_inbox(bucket: str, media_dir: Path, tmp_path: Path) -> None:
    """20 short real clips through two watchers on one bucket: each out exactly once, byte-identical to a local inbox's run."""
    from conftest import SPEECH_WAV

    clips = _short_clips(media_dir / SPEECH_WAV, tmp_path / "local" / "inbox", 20)
    names = [clip.name for clip in clips]
    fs = _fs()
    for clip in clips:
        fs.put_file(str(clip), f"{bucket}/inbox/{clip.name}")
    watchers = [subprocess.Popen(_watch_command(f"s3://{bucket}/inbox/"), env=_env(tmp_path, name, {}), cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    logs = [watcher.communicate(timeout=900)[0] for watcher in watchers]
    assert [watcher.returncode for watcher in watchers] == [0, 0], logs
    local = subprocess.run(_watch_command(tmp_path / "local" / "inbox"), env=_env(tmp_path, "local", {}), cwd=tmp_path,
                           capture_output=True, text=True, timeout=900)
    assert local.returncode == 0, local.stdout + local.stderr
    taken = [_lines(log, "taken") for log in logs]
    assert sorted(taken[0] + taken[1]) == names, taken
    assert sorted(_lines(logs[0], "done") + _lines(logs[1], "done")) == names, logs
    assert sorted(Path(key).name for key in fs.find(f"{bucket}/outbox")) == names
    for name in names:
        assert fs.cat_file(f"{bucket}/outbox/{name}") == (tmp_path / "local" / "outbox" / name).read_bytes(), name
        assert fs.cat_file(f"{bucket}/done/{name}") == (tmp_path / "local" / "done" / name).read_bytes(), name
    assert sorted(Path(key).name for key in fs.find(f"{bucket}/done")) == names
    assert fs.find(f"{bucket}/inbox") == [], "objects or claims left in the inbox"
    print(f"20 files: watcher a took {len(taken[0])}, watcher b {len(taken[1])}; every output byte-identical to the local inbox's")


def _uploads_in_progress(bucket: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    return [upload["Key"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_watcher_killed_mid_upload_leaves_nothing_partial_and_the_file_is_taken_again(bucket: str, media_dir: Path, tmp_path: Path) -> None:
    """kill -9 while the output is going up in parts: no object under its name; the next watcher on the host cleans it once."""
    from conftest import SPEECH_WAV

    from destatic.store import PART_BYTES

    speech, rate = sf.read(media_dir / SPEECH_WAV, dtype="int16")
    repeats = int(np.ceil(3 * PART_BYTES / (2 * 2 * len(speech))))  # stereo 16-bit, over three parts
    long = np.tile(np.column_stack([speech, speech[::-1]]), (repeats, 1))
    source = tmp_path / "long.wav"
    sf.write(source, long, rate, subtype="PCM_16")
    fs = _fs()
    fs.put_file(str(source), f"{bucket}/inbox/long.wav")
    env = _env(tmp_path, "a", {})
    watcher = subprocess.Popen(_watch_command(f"s3://{bucket}/inbox/"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not _uploads_in_progress(bucket):
        assert watcher.poll() is None, f"the watcher ended before its upload was seen: {watcher.communicate()[0].decode()[-3000:]}"
        assert time.monotonic() < deadline, "no multipart upload within 600 s"
        time.sleep(0.01)
    os.kill(watcher.pid, signal.SIGKILL)
    watcher.communicate(timeout=30)
    assert fs.find(f"{bucket}/outbox") == [], "a partial output is visible"
    assert fs.find(f"{bucket}/done") == []
    assert f"{bucket}/inbox/long.wav" in fs.find(f"{bucket}/inbox"), "the original left the inbox before its output existed"
    again = subprocess.run(_watch_command(f"s3://{bucket}/inbox/"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "taken: long.wav" in again.stdout and "done: long.wav" in again.stdout, again.stdout
    assert fs.find(f"{bucket}/outbox") == [f"{bucket}/outbox/long.wav"]
    out, out_rate = sf.read(io.BytesIO(fs.cat_file(f"{bucket}/outbox/long.wav")))
    assert out_rate == rate and out.shape == long.shape
    assert fs.cat_file(f"{bucket}/done/long.wav") == source.read_bytes()
    assert fs.find(f"{bucket}/inbox") == []
