"""Profile: measure how loud the noise is in each channel and frequency bin.

From a noise-only stretch of the audio (its head, or a segment), from a
separate noise recording, or (``auto``) from minimum statistics under speech;
the profile also holds any mains hum found in a measured stretch, or (``auto``)
persisting through the file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from destatic import cache, dsp, media
from destatic.errors import BadInputError, InternalError, UncleanableAudioError
from destatic.steps.records import AudioFile, ProfiledNoise

if TYPE_CHECKING:
    from destatic.settings import Settings

__all__ = ["BY_CONTENT", "SUFFIX", "arguments", "estimate_file_profile", "run", "saved_profile", "target_in"]

SUFFIX = ".npz"
BY_CONTENT = ("noise_file", "profile_file")
"""The step's artifact: a profile, named by the cache key of its inputs, the files from outside the work folder counted by their bytes."""


def arguments(settings: Settings) -> dict[str, Any]:
    """The step's arguments that the settings give: the request, the method, the noise file and the saved profile.

    The rest are the audio, the work folder and the noise file's audio
    (its extraction, when ``noise.mode`` is ``file``).
    """
    noise, method = settings.noise, settings.suppression.method
    return {
        "request": noise.request(method),
        "method": method,
        "noise_file": noise.file.absolute() if noise.mode == "file" and noise.file else None,
        "profile_file": noise.profile_file.absolute() if noise.profile_file else None,
    }


def target_in(work_dir: Path, audio: AudioFile, given: dict[str, Any], *, noise_audio: AudioFile | None = None) -> Path:
    """The step's profile for `audio` in `work_dir`, named as the task names it (`given`: :func:`arguments`)."""
    inputs = {"audio": audio, "work_dir": work_dir, "noise_audio": noise_audio, **given}
    return cache.artifact_path("profile", inputs, SUFFIX, content=BY_CONTENT)


def estimate_file_profile(
    audio: AudioFile,
    request: dsp.ProfileRequest,
    *,
    method: str | None = None,
    noise_audio: AudioFile | None = None,
    noise_file: Path | None = None,
) -> dsp.NoiseProfile:
    """Noise profile of a WAV as `request` asks, read block by block (a head or auto profile reads only the start).

    Parameters
    ----------
    audio : AudioFile
        The audio to clean.
    request : ProfileRequest
        ``head``: its first ``head_samples``; ``segment``: ``start_s``..``end_s``;
        ``file``: all of `noise_audio`; ``auto``: minimum statistics, no noise-only stretch, and the
        mains hum persisting through the file (:func:`destatic.dsp.find_hum`, stretches read by seeking)
        unless ``request.hum`` is ``off``.
    method : str or None
        The suppression method the profile is for (``seed`` has its own framing).
    noise_audio : AudioFile or None
        The noise recording, for ``mode="file"``.
    noise_file : Path or None
        The file `noise_audio` came from, named in errors.

    Raises
    ------
    BadInputError
        The noise recording's rate differs from the audio's.
    """
    if request.mode != "file":
        source = audio
    elif noise_audio is None:
        raise InternalError("noise.mode='file' needs noise_audio, the extracted noise recording")
    else:
        source = noise_audio
        if noise_audio.sample_rate != audio.sample_rate:
            raise BadInputError(
                noise_file or noise_audio.path,
                f"noise recording at {noise_audio.sample_rate} Hz, audio at {audio.sample_rate} Hz",
            )
    framing = dsp.framing_for(method)
    tones = None
    if request.mode == "auto" and request.hum == "auto" and not framing.get("centered", False):
        tones = dsp.find_hum(functools.partial(media.wav_clip, audio.path), audio.frames, audio.sample_rate)
    return dsp.profile_from_blocks(
        media.wav_blocks(source.path), audio.sample_rate, **request.keywords(), tones=tones, **framing
    )


def saved_profile(path: Path, *, sample_rate: int, channels: int, method: str | None = None) -> dsp.NoiseProfile:
    """A profile saved by ``destatic profile --save``, checked against the audio it is to clean, for that audio.

    Raises
    ------
    ParameterError
        Not a profile (:meth:`destatic.dsp.NoiseProfile.load`).
    UncleanableAudioError
        Another sample rate, a channel count other than 1 or
        the audio's, or another framing than `method` needs; the message says
        how to make one that fits.
    """
    profile = dsp.NoiseProfile.load(path)
    remedy = "save one made from a recording like it (destatic profile FILE --save)"
    if profile.sample_rate != sample_rate:
        raise UncleanableAudioError(f"the noise profile {path.name!r} was measured at {profile.sample_rate} Hz, the audio is {sample_rate} Hz: {remedy}")
    if profile.channels not in (1, channels):
        raise UncleanableAudioError(f"the noise profile {path.name!r} has {profile.channels} channels, the audio {channels}: {remedy}, or a mono one")
    needed = dsp.framing_for(method) or {"centered": False}
    if any(getattr(profile, name) != value for name, value in needed.items()):
        raise UncleanableAudioError(
            f"the noise profile {path.name!r} was made for {'the seed method' if profile.centered else 'the other methods'}, "
            f"not for method={dsp.resolve_method(method)!r}: {remedy}"
        )
    return profile.for_another_recording().for_channels(channels)


def run(
    audio: AudioFile,
    target: Path,
    request: dsp.ProfileRequest,
    *,
    method: str | None = None,
    noise_audio: AudioFile | None = None,
    noise_file: Path | None = None,
    profile_file: Path | None = None,
) -> ProfiledNoise:
    """The profile step: estimate the noise profile of `audio` (see :func:`estimate_file_profile`) and save it as `target` (``.npz``).

    With `profile_file` the saved profile is used instead (:func:`saved_profile`).
    """
    if profile_file is not None:
        measured = saved_profile(profile_file, sample_rate=audio.sample_rate, channels=audio.channels, method=method)
    else:
        measured = estimate_file_profile(audio, request, method=method, noise_audio=noise_audio, noise_file=noise_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial:
        measured.save(partial)
    return ProfiledNoise(path=target, profile=measured)
