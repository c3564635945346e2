"""Fixtures shared by every test: the shared media folder, a seeded rng.

Prefect is configured here, before anything imports it, so that no test
touches the user's ``~/.prefect``; the Prefect server itself is started only
for the tests that need it (``tests/pipeline/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO_ROOT.parent / "shared" / "media"

os.environ["PREFECT_HOME"] = str(REPO_ROOT / ".prefect" / "pytest")
(REPO_ROOT / ".prefect" / "pytest").mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.pop("PREFECT_API_URL", None)
# The user's cache folder (the default work folder) is the test session's own.
_CACHE_HOME = REPO_ROOT / ".prefect" / "pytest" / "xdg-cache"
shutil.rmtree(_CACHE_HOME, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = str(_CACHE_HOME)
# Commands run by the tests use Prefect's temporary server (or the harness's), never a background one left running;
# tests/pipeline/test_server.py starts and stops its own in a folder of its own.
os.environ["XDG_STATE_HOME"] = str(REPO_ROOT / ".prefect" / "pytest" / "xdg-state")
# Settings from the caller's environment must not leak into tests (other
# DESTATIC_* variables, such as DESTATIC_FFMPEG, are left alone).
for _name in [name for name in os.environ if name.startswith("DESTATIC_") and ("__" in name or name == "DESTATIC_CONFIG")]:
    del os.environ[_name]
os.environ["DESTATIC_RUNTIME__SERVER"] = "embedded"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The shared real media (``../shared/media`` beside the checkout); skip if absent."""
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"shared media folder {MEDIA_DIR} is absent")
    return MEDIA_DIR


SPEECH_WAV = "pairs/noizeus/sp01_car_sn5.wav"
SHORT_VIDEO = "video/bbaf2n.mpg"


@pytest.fixture
def speech_wav(media_dir: Path, tmp_path: Path) -> Path:
    """A copy of a real noisy sentence (NOIZEUS, car noise at 5 dB, 8 kHz mono, 2.5 s)."""
    return _copy_into(media_dir / SPEECH_WAV, tmp_path / "input" / "speech.wav")


@pytest.fixture
def short_video(media_dir: Path, tmp_path: Path) -> Path:
    """A copy of a real 3 s talking-head clip (mpeg1video + mp2, 44.1 kHz stereo)."""
    return _copy_into(media_dir / SHORT_VIDEO, tmp_path / "input" / "talk.mpg")


def _copy_into(source: Path, target: Path) -> Path:
    """Copy a shared media file to `target` (folders made), so tests never touch the original."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.fixture
def rng() -> np.random.Generator:
    """A random generator with a fixed seed, so failures reproduce."""
    return np.random.default_rng(20240611)
