"""Settings of the destatic pipeline, from flags, environment and files.

One root :class:`Settings` with nested groups. Sources, strongest first:

1. keyword arguments (the CLI's flags),
2. ``DESTATIC_*`` environment variables, ``__`` between nesting levels
   (``DESTATIC_SUPPRESSION__REDUCTION_DB=18``),
3. a ``.env`` file in the working directory,
4. a ``destatic.toml`` file in the working directory (or the file named by
   ``DESTATIC_CONFIG``),
5. the defaults below.

A bad value fails when the settings are built, naming the field and what is
allowed (:func:`load_settings` turns pydantic's error into a
:class:`~destatic.errors.ParameterError`).
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from destatic.dsp.choices import HUM_MODES, HumMode, ProfileMode, profile_mode
from destatic.dsp.methods import LEARNED_METHODS, METHOD_SPECS, METHODS, Method, build_options, method_spec, methods_described, resolve_method
from destatic.dsp.options import HEAD_SAMPLES, ProfileRequest, SuppressionOptions
from destatic.errors import ParameterError
from destatic.media.formats import AUDIO_FORMATS, AudioFormat

__all__ = [
    "CacheSettings",
    "NoiseSettings",
    "OutputSettings",
    "PathSettings",
    "RuntimeSettings",
    "Settings",
    "SuppressionSettings",
    "WatchSettings",
    "CONFIG_FILE",
    "Dispatch",
    "EventsMode",
    "Folder",
    "OutputMode",
    "ServerKind",
    "TaskRunnerKind",
    "is_url",
    "load_settings",
]

OutputMode = Literal["remux", "audio"]
"""What the pipeline writes: the original container with cleaned audio, or the audio alone."""
Dispatch = Literal["inline", "deployment"]
"""Who cleans the files a watcher claims: the watcher itself, or the workers of a deployment."""
TaskRunnerKind = Literal["thread", "dask"]
"""Where the steps run: threads of the flow's process, or a Dask cluster."""
ServerKind = Literal["background", "embedded"]
"""Which Prefect server a command uses when PREFECT_API_URL names none."""
EventsMode = Literal["auto", "on", "off"]
"""How the watcher learns of new files in a local inbox: notifications where they work, always, or never (scans only)."""
Folder = Path | str
"""A folder setting: a local path, or (inbox, outbox, done, quarantine) an fsspec URL such as ``s3://bucket/prefix/``."""

CONFIG_FILE = "destatic.toml"
_config_override: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "destatic_config_file", default=None
)


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def user_cache_folder() -> Path:
    """destatic's folder in the user's cache: ``$XDG_CACHE_HOME/destatic``, else ``~/.cache/destatic`` (platformdirs)."""
    return Path(platformdirs.user_cache_dir("destatic", appauthor=False))


BESIDE_THE_INBOX = ("outbox", "done", "quarantine")


def is_url(folder: Any) -> bool:
    """Whether a folder setting is a URL of object storage (``s3://bucket/prefix/``) rather than a local path."""
    return isinstance(folder, str) and "://" in folder


def _beside(inbox: Folder, name: str) -> Folder:
    """The folder `name` in the parent of `inbox`: a sibling folder, or a sibling prefix in the same bucket."""
    if not is_url(inbox):
        return Path(inbox).parent / name
    scheme, _, rest = str(inbox).partition("://")
    bucket, _, prefix = rest.strip("/").partition("/")
    if not prefix:
        raise ValueError(f"inbox={inbox!r} is a bucket's root: set outbox, done and quarantine, or use a prefix such as {scheme}://{bucket}/inbox/")
    parent = prefix.rpartition("/")[0]
    return f"{scheme}://{bucket}/{parent + '/' if parent else ''}{name}/"


class PathSettings(_Group):
    """Folders the pipeline reads and writes; relative paths are from the working directory.

    Never the working directory by accident: the outbox, ``done/`` and
    quarantine default to folders beside the inbox (in its parent), the work
    folder to the user's cache.
    """

    inbox: Folder = Field(Path("inbox"), description="Folder the watcher takes new files from; or an s3:// URL (the s3 extra).")
    outbox: Folder = Field(
        Path("outbox"),
        description="Where the watcher writes results, mirroring the inbox's subfolders; none: `outbox` beside the inbox.",
        json_schema_extra={"shown": "<inbox>/../outbox"},
    )
    work: Path = Field(
        default_factory=lambda: user_cache_folder() / "work",
        description="Per-file work folders, cached step outputs and reports (see cache.max_gb); none: in the user's cache.",
        json_schema_extra={"shown": "$XDG_CACHE_HOME/destatic/work"},
    )
    quarantine: Folder = Field(
        Path("quarantine"),
        description="Bad inputs are moved here with NAME.error.txt; none: `quarantine` beside the inbox.",
        json_schema_extra={"shown": "<inbox>/../quarantine"},
    )
    done: Folder = Field(
        Path("done"),
        description="Originals are moved here once processed (never deleted); none: `done` beside the inbox.",
        json_schema_extra={"shown": "<inbox>/../done"},
    )

    @field_validator("inbox", "outbox", "quarantine", "done", mode="before")
    @classmethod
    def _path_unless_url(cls, value: Any) -> Any:
        return value if value is None or is_url(value) else Path(value)

    @model_validator(mode="before")
    @classmethod
    def _beside_the_inbox(cls, data: Any) -> Any:
        if isinstance(data, dict):
            inbox = data.get("inbox") or "inbox"
            inbox = inbox if is_url(inbox) else Path(inbox)
            data = {**data, **{name: _beside(inbox, name) for name in BESIDE_THE_INBOX if data.get(name) is None}}
        return data

    @model_validator(mode="after")
    def _urls_start_at_the_inbox(self) -> PathSettings:
        if not is_url(self.inbox):
            remote = [name for name in BESIDE_THE_INBOX if is_url(getattr(self, name))]
            if remote:
                raise ValueError(f"{', '.join(remote)} on object storage need the inbox there too (inbox={str(self.inbox)!r})")
        return self



class CacheSettings(_Group):
    """How much disk the work folder may take."""

    max_gb: float | None = Field(
        None,
        gt=0,
        description="Largest size of the work folder in GB, kept after every run by evicting the least recently used "
        "entries whole; none: 5 GB, or a tenth of the space it may take where that is smaller.",
    )


class OutputSettings(_Group):
    """What the pipeline writes for each input."""

    mode: OutputMode = Field(
        "remux", description="remux: the original container with cleaned audio (video copied); audio: audio only."
    )
    format: AudioFormat | None = Field(
        None, description=f"Audio-only format ({', '.join(AUDIO_FORMATS)}), which implies mode=audio; none: from the output name, else flac."
    )
    suffix: str = Field("-clean", description="Added to the input's stem when no output name is given.")
    residue: bool = Field(
        False, description="Also write what was removed (the input minus the output, sample-aligned) beside the output, as NAME-residue.EXT."
    )
    loudness_lufs: float | None = Field(
        None, ge=-70, le=-5, description="Bring the cleaned audio to this integrated loudness (EBU R128, LUFS; -16 for speech online) with one gain; none: off."
    )
    true_peak_db: float = Field(
        -1.0, ge=-20, le=0, description="With loudness_lufs: the true peak (dBTP) the gain may not push the audio past; it wins over the target."
    )

    @model_validator(mode="before")
    @classmethod
    def _format_means_audio_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") is not None:
            if data.get("mode") == "remux":
                raise ValueError("format applies to the audio alone: set mode='audio' or leave format out to remux")
            data = {**data, "mode": "audio"}
        return data

    @field_validator("format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.lower().lstrip(".")
        if value not in AUDIO_FORMATS:
            raise ValueError(f"format={value!r} is not one of {', '.join(AUDIO_FORMATS)}")
        return value

    @field_validator("suffix")
    @classmethod
    def _plain_suffix(cls, value: str) -> str:
        if "/" in value or "\\" in value or "\0" in value:
            raise ValueError(f"suffix={value!r} must not contain path separators")
        return value


_DEFAULT_PROFILES = ", ".join(
    [f"{spec.default_profile} for {spec.name}" for spec in METHOD_SPECS.values() if spec.default_profile != "auto"] + ["else auto"]
)


class NoiseSettings(_Group):
    """How the noise profile is made (see :func:`destatic.dsp.estimate_profile`)."""

    mode: ProfileMode | None = Field(
        None,
        description="auto: track the noise floor; head: first samples; segment: start..end; file: a noise recording; "
        f"none: the method's own ({_DEFAULT_PROFILES}).",
    )
    head_samples: int = Field(HEAD_SAMPLES, gt=0, description="Samples read for mode=head.")
    start_s: float | None = Field(None, ge=0, description="Start of the noise-only stretch (mode=segment), seconds.")
    end_s: float | None = Field(None, gt=0, description="End of the noise-only stretch (mode=segment), seconds.")
    file: Path | None = Field(None, description="Noise-only recording (mode=file).")
    profile_file: Path | None = Field(
        None,
        description="A noise profile saved by `destatic profile --save` (.npz), used for every file instead of "
        "measuring one; its sample rate must be the audio's, its channels 1 or the audio's.",
    )
    hum: HumMode = Field(
        "auto",
        description=f"Mains hum cancelled coherently ({', '.join(HUM_MODES)}): auto where found, in the noise-only stretch "
        "or (mode auto) as a 50/60 Hz series persisting through the file; off: left to the spectral gain.",
    )

    @model_validator(mode="after")
    def _mode_has_what_it_needs(self) -> NoiseSettings:
        if self.profile_file is not None and self.mode is not None:
            raise ValueError(f"profile_file is a saved profile, used instead of measuring one: leave mode={self.mode!r} out")
        if self.mode == "segment":
            if self.start_s is None or self.end_s is None:
                raise ValueError("mode='segment' needs both start_s and end_s")
            if self.end_s <= self.start_s:
                raise ValueError(f"end_s={self.end_s} must be greater than start_s={self.start_s}")
        if self.mode == "file" and self.file is None:
            raise ValueError("mode='file' needs file, the path of a noise-only recording")
        return self

    def resolved_mode(self, method: str | None) -> str:
        """The profile mode to use with `method`: as set, else the method's own (:func:`destatic.dsp.choices.profile_mode`)."""
        return profile_mode(self.mode, method)

    def request(self, method: str | None) -> ProfileRequest:
        """Where the profile step measures the noise for `method` (:meth:`resolved_mode`), as the DSP's record."""
        return ProfileRequest(self.resolved_mode(method), self.head_samples, self.start_s, self.end_s, self.hum)


class SuppressionSettings(_Group):
    """How the noise is taken out; None means the DSP core's default."""

    method: Method | None = Field(None, description=f"Suppression method: {methods_described()}; none: the default.")
    reduction_db: float | None = Field(
        None, gt=0, le=120, description="Maximum reduction of any bin, dB; none: the DSP default.",
        json_schema_extra={"option": "max_reduction_db"},
    )
    smoothing: float | None = Field(
        None, ge=0, le=0.999, description="Weight of the previous frame in the prior SNR, 0..0.999; higher: less musical noise."
    )
    sensitivity_db: float | None = Field(
        None, ge=-40, le=40, description="Raise (+) or lower (-) the noise estimate by this many dB."
    )
    learned_provider: str | None = Field(
        None,
        description=f"onnxruntime execution provider of the learned methods' model ({', '.join(LEARNED_METHODS)}; "
        "the others ignore it); none: CPUExecutionProvider.",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in METHODS:
            raise ValueError(f"method={value!r} is not one of {', '.join(METHODS)}")
        return value

    @model_validator(mode="after")
    def _options_fit_the_method(self) -> SuppressionSettings:
        try:
            spec = method_spec(resolve_method(self.method))
        except ParameterError as error:  # a learned method that cannot run here
            raise ValueError(str(error)) from None
        if not spec.accepts and (given := self._given()):
            raise ValueError(f"method={spec.name!r} ({spec.summary}) takes no options, got {sorted(given)}")
        return self

    def _given(self) -> dict[str, Any]:
        """The options set here, by the DSP's names (a field's ``option``, else its own name)."""
        return {
            (field.json_schema_extra or {}).get("option", name): getattr(self, name)  # type: ignore[union-attr]
            for name, field in type(self).model_fields.items()
            if name != "method" and getattr(self, name) is not None
        }

    def options(self) -> SuppressionOptions:
        """The option record the method takes (:mod:`destatic.dsp.methods`), from the options set here that it takes.

        Those left unset keep the DSP's defaults; one the method does not take
        (the learned provider, for a classic method) is left out.
        """
        method = resolve_method(self.method)
        accepted = method_spec(method).accepts
        return build_options(method, {name: value for name, value in self._given().items() if name in accepted})


class WatchSettings(_Group):
    """The folder watcher."""

    interval_s: float = Field(10.0, gt=0, description="Seconds between scans of the inbox.")
    stable_s: float = Field(5.0, ge=0, description="A file is taken once its size and mtime have not changed for this long.")
    concurrency: int = Field(1, ge=1, le=64, description="Files processed at once by one watcher (inline dispatch).")
    dispatch: Dispatch = Field(
        "inline",
        description="inline: the watcher cleans its files itself; deployment: it starts one run of the per-file "
        "deployment per file, for the workers of a Prefect server (PREFECT_API_URL) to take.",
    )
    deployment: str = Field(
        "denoise-file/destatic", description="The per-file deployment for dispatch=deployment, as FLOW/DEPLOYMENT."
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Runs a file may fail for a reason other than its content (disk full, ffmpeg killed, ...) before it "
        "is quarantined; until then it is left in the inbox. Bad input is quarantined at once.",
    )
    retry_after_s: float = Field(
        300.0, ge=0, description="A file left in the inbox after such a failure is not taken again for this long."
    )
    events: EventsMode = Field(
        "auto",
        description="A local inbox: on: a scan starts as soon as a file has settled (filesystem notifications: inotify, "
        "FSEvents), the interval's scans kept as a safety net; off: scans only; auto: on unless the inbox is on a network "
        "mount (NFS, SMB, ...), where notifications miss other machines' writes.",
    )
    store_endpoint: str | None = Field(
        None,
        description="Endpoint URL of the object store of s3:// folders (MinIO, Ceph, ...); none: AWS_ENDPOINT_URL, "
        "else AWS's. Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an AWS profile.",
    )
    store_profile: str | None = Field(None, description="AWS profile of s3:// folders' credentials; none: AWS_PROFILE, else the default.")

    @field_validator("deployment")
    @classmethod
    def _flow_slash_deployment(cls, value: str) -> str:
        flow_name, _, deployment_name = value.partition("/")
        if not flow_name.strip() or not deployment_name.strip() or "/" in deployment_name:
            raise ValueError(f"deployment={value!r} must be FLOW/DEPLOYMENT, e.g. 'denoise-file/destatic'")
        return value


class RuntimeSettings(_Group):
    """How Prefect runs the steps."""

    retries: int = Field(3, ge=0, le=20, description="Retries of a step after a transient failure (never after bad input).")
    retry_delay_s: float = Field(2.0, ge=0, description="First retry delay; doubles on each retry.")
    task_runner: TaskRunnerKind = Field("thread", description="thread: one process; dask: prefect-dask.")
    dask_address: str | None = Field(None, description="Scheduler of an existing Dask cluster; None: a local cluster.")
    dask_workers: int | None = Field(
        None, ge=1, le=256, description="Worker processes of the local Dask cluster; none: one per CPU this process may use."
    )
    server: ServerKind = Field(
        "background",
        description="Without PREFECT_API_URL: background: a local Prefect server that the first command starts and later "
        "ones reuse (destatic server status|stop); embedded: Prefect's temporary server, one per command.",
    )
    shortcut: bool = Field(
        True,
        description="destatic run answers a request it has answered before (same input bytes, settings and versions, "
        "its results still cached) by copying them again, without a Prefect flow run; false: always run the flow.",
    )
    isolate_steps: bool = Field(
        True,
        description="Run the profile, subtract, inverse, loudness, residue and report steps in a child process that "
        "holds no Prefect, so that no process holds both (peak memory about half); false: in the flow's process "
        "(for a debugger).",
    )
    ffmpeg_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Longest one ffmpeg call may run before it is killed and its input quarantined; none: 300 s "
        "plus 1 s per MiB of the file it reads (always so on Dask workers).",
    )

    @model_validator(mode="after")
    def _dask_options_need_dask(self) -> RuntimeSettings:
        if self.task_runner != "dask" and self.dask_address is not None:
            raise ValueError(f"dask_address={self.dask_address!r} needs task_runner='dask', not {self.task_runner!r}")
        return self


class Settings(BaseSettings):
    """Every setting of destatic, in groups.

    Build it with :func:`load_settings` (or ``Settings(**overrides)``); see the
    module docstring for the order of sources.
    """

    model_config = SettingsConfigDict(
        env_prefix="DESTATIC_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    paths: PathSettings = Field(default_factory=PathSettings)
    cache: CacheSettings = CacheSettings()
    output: OutputSettings = OutputSettings()
    noise: NoiseSettings = NoiseSettings()
    suppression: SuppressionSettings = SuppressionSettings()
    watch: WatchSettings = WatchSettings()
    runtime: RuntimeSettings = RuntimeSettings()

    def to_parameters(self) -> dict[str, Any]:
        """These settings as a JSON-able flow parameter, the folders made absolute.

        A run started elsewhere (a worker process, another machine with the
        same mount) has another working directory: relative folders would
        point somewhere else there.
        """
        folders = {name: value if is_url(value) else Path(value).absolute() for name, value in self.paths.model_dump().items()}
        return self.model_copy(update={"paths": PathSettings(**folders)}).model_dump(mode="json")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_override.get() or Path(os.environ.get("DESTATIC_CONFIG", CONFIG_FILE))
        toml_settings = TomlConfigSettingsSource(settings_cls, toml_file=toml_file)
        return init_settings, env_settings, dotenv_settings, toml_settings


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] in ("extra_forbidden",):
            message = "is not a setting"
        elif "input" in item and not isinstance(item["input"], dict):
            field = f"{field}={item['input']!r}"
        variable = "DESTATIC_" + "__".join(str(part).upper() for part in item["loc"])
        if "input" in item and os.environ.get(variable) == str(item["input"]):
            field += f" (from the environment variable {variable})"
        lines.append(f"{field}: {message}")
    return "; ".join(lines)


def load_settings(*, config: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from every source, with `overrides` strongest.

    Parameters
    ----------
    config : Path or None
        TOML file to read instead of ``destatic.toml`` / ``$DESTATIC_CONFIG``.
    **overrides
        Group dictionaries, e.g. ``suppression={"reduction_db": 18}``; values of
        None are dropped so that weaker sources still apply.

    Returns
    -------
    Settings

    Raises
    ------
    ParameterError
        A value is not allowed; the message names the field and what is allowed.
    """
    if config is not None and not Path(config).is_file():
        raise ParameterError(f"config={str(config)!r} is not a file")
    cleaned = {
        group: {key: value for key, value in fields.items() if value is not None}
        if isinstance(fields, dict)
        else fields
        for group, fields in overrides.items()
    }
    token = _config_override.set(Path(config) if config is not None else None)
    try:
        return Settings(**{group: fields for group, fields in cleaned.items() if fields != {}})
    except ValidationError as error:
        raise ParameterError(f"bad setting: {_describe(error)}") from None
    finally:
        _config_override.reset(token)
