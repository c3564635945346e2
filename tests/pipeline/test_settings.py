"""Settings: the order of sources, and bad values failing with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from destatic.dsp.methods import method_spec
from destatic.errors import ParameterError
from destatic.settings import Settings, load_settings


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder with no DESTATIC_* variables set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DESTATIC_CONFIG", raising=False)
    return tmp_path


def test_defaults(in_tmp: Path) -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.noise.mode is None
    assert settings.noise.resolved_mode(None) == "auto"
    assert settings.noise.resolved_mode("seed") == "head"
    assert settings.noise.head_samples == 8192
    assert settings.output.mode == "remux"
    assert settings.suppression.options() == method_spec(None).options()


def test_each_source_beats_the_next(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each of the five fields is set by every source from the weakest up to one
    # level: whichever source is strongest among those that set it must win.
    (in_tmp / "destatic.toml").write_text(
        "[watch]\ninterval_s = 1.0\nstable_s = 1.0\nconcurrency = 1\n[runtime]\nretries = 1\n"
    )
    (in_tmp / ".env").write_text("DESTATIC_WATCH__INTERVAL_S=2\nDESTATIC_WATCH__STABLE_S=2\nDESTATIC_WATCH__CONCURRENCY=2\n")
    monkeypatch.setenv("DESTATIC_WATCH__INTERVAL_S", "3")
    monkeypatch.setenv("DESTATIC_WATCH__STABLE_S", "3")
    settings = load_settings(watch={"interval_s": 4.0, "stable_s": None})
    assert settings.watch.interval_s == 4.0  # flag > env > .env > toml
    assert settings.watch.stable_s == 3.0  # env > .env > toml; a None flag does not count
    assert settings.watch.concurrency == 2  # .env > toml
    assert settings.runtime.retries == 1  # toml > default
    assert settings.runtime.retry_delay_s == Settings.model_fields["runtime"].default.retry_delay_s


def test_nested_groups_merge_across_sources(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTATIC_SUPPRESSION__SMOOTHING", "0.25")
    settings = load_settings(suppression={"reduction_db": 9})
    assert settings.suppression.smoothing == 0.25
    assert settings.suppression.reduction_db == 9
    assert settings.suppression.options() == method_spec(None).options(max_reduction_db=9, smoothing=0.25)


def test_config_file_named_explicitly(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "destatic.toml").write_text("[output]\nsuffix = '-toml'\n")
    other = in_tmp / "other.toml"
    other.write_text("[output]\nsuffix = '-other'\n")
    assert load_settings().output.suffix == "-toml"
    assert load_settings(config=other).output.suffix == "-other"
    monkeypatch.setenv("DESTATIC_CONFIG", str(other))
    assert load_settings().output.suffix == "-other"
    with pytest.raises(ParameterError, match="missing.toml"):
        load_settings(config=in_tmp / "missing.toml")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"suppression": {"reduction_db": -3}}, r"suppression\.reduction_db=-3: Input should be greater than 0"),
        ({"noise": {"mode": "bogus"}}, r"noise\.mode='bogus': Input should be 'auto', 'head', 'segment' or 'file'"),
        ({"noise": {"mode": "segment", "start_s": 2.0}}, r"noise: mode='segment' needs both start_s and end_s"),
        ({"noise": {"mode": "segment", "start_s": 2.0, "end_s": 1.0}}, r"end_s=1\.0 must be greater than start_s=2\.0"),
        ({"noise": {"mode": "file"}}, r"mode='file' needs file"),
        ({"output": {"format": "xyz"}}, r"format='xyz' is not one of wav, flac"),
        ({"watch": {"concurrency": 0}}, r"watch\.concurrency=0: Input should be greater than or equal to 1"),
        ({"watch": {"colour": 1}}, r"watch\.colour: is not a setting"),
        ({"watch": {"dispatch": "email"}}, r"watch\.dispatch='email': Input should be 'inline' or 'deployment'"),
        ({"watch": {"deployment": "destatic"}}, r"deployment='destatic' must be FLOW/DEPLOYMENT"),
        ({"watch": {"deployment": "a/b/c"}}, r"deployment='a/b/c' must be FLOW/DEPLOYMENT"),
        ({"runtime": {"dask_address": "tcp://h:8786"}}, r"dask_address='tcp://h:8786' needs task_runner='dask', not 'thread'"),
        ({"runtime": {"dask_workers": 0}}, r"runtime\.dask_workers=0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_values_name_the_field(in_tmp: Path, overrides: dict, expected: str) -> None:
    with pytest.raises(ParameterError, match=expected):
        load_settings(**overrides)


def test_bad_environment_value_fails_at_start(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTATIC_RUNTIME__RETRIES", "many")
    with pytest.raises(ParameterError, match=r"runtime\.retries='many'"):
        load_settings()


def test_output_format_is_normalised(in_tmp: Path) -> None:
    assert load_settings(output={"format": ".FLAC"}).output.format == "flac"


def test_to_parameters_makes_folders_absolute_and_round_trips(in_tmp: Path) -> None:
    from destatic.settings import Settings

    settings = load_settings(paths={"inbox": "in"}, watch={"dispatch": "deployment"})
    parameters = settings.to_parameters()
    assert parameters["paths"]["inbox"] == str(in_tmp / "in")
    assert all(Path(folder).is_absolute() for folder in parameters["paths"].values())
    rebuilt = Settings(**parameters)
    assert rebuilt.watch == settings.watch and rebuilt.paths.inbox == in_tmp / "in"


def test_folders_on_object_storage_keep_their_urls_and_default_beside_the_inbox(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTATIC_PATHS__INBOX", "s3://media/in/box/")
    settings = load_settings()
    assert settings.paths.inbox == "s3://media/in/box/"
    assert (settings.paths.outbox, settings.paths.done, settings.paths.quarantine) == ("s3://media/in/outbox/", "s3://media/in/done/", "s3://media/in/quarantine/")
    assert load_settings(paths={"inbox": "s3://media/inbox"}).paths.done == "s3://media/done/"
    again = Settings(**settings.to_parameters())
    assert again.paths.inbox == settings.paths.inbox and again.paths.quarantine == settings.paths.quarantine
    mixed = load_settings(paths={"inbox": "s3://media/inbox/", "outbox": in_tmp / "out"})
    assert mixed.paths.outbox == in_tmp / "out" and mixed.paths.done == "s3://media/done/"


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ({"inbox": "s3://media"}, "inbox='s3://media' is a bucket's root: set outbox, done and quarantine"),
        ({"inbox": "in", "outbox": "s3://media/out/"}, "outbox on object storage need the inbox there too"),
    ],
)
def test_object_storage_folders_that_cannot_work_are_refused(in_tmp: Path, paths: dict, expected: str) -> None:
    with pytest.raises(ParameterError, match=expected.replace("(", r"\(")):
        load_settings(paths=paths)


def test_an_inbox_at_a_buckets_root_works_with_its_other_folders_set(in_tmp: Path) -> None:
    settings = load_settings(paths={"inbox": "s3://media", "outbox": "s3://out/", "done": "s3://media-done/", "quarantine": "s3://q/"})
    assert (settings.paths.inbox, settings.paths.outbox) == ("s3://media", "s3://out/")


def test_a_residue_folder_names_each_residue_after_its_output(in_tmp: Path) -> None:
    from destatic import preflight
    from destatic.workspace import residue_output

    settings = load_settings(output={"suffix": "-clean"})
    inputs = [in_tmp / "talk.mp4", in_tmp / "song.wav"]
    (in_tmp / "removed").mkdir()
    requests = preflight.plan(inputs, settings, residue=in_tmp / "removed")
    assert [item.residue.name for item in requests] == ["talk-clean-residue.mp4", "song-clean-residue.wav"]
    assert [item.residue.name for item in requests] == [residue_output(item.output).name for item in requests]


def test_the_profile_request_carries_the_noise_settings_with_the_methods_mode() -> None:
    noise = load_settings(noise={"mode": "segment", "start_s": 1.0, "end_s": 2.5, "hum": "off"}).noise
    assert noise.request("logmmse").keywords() == {"mode": "segment", "head_samples": 8192, "start_s": 1.0, "end_s": 2.5, "hum": "off"}
    assert load_settings().noise.request("seed").mode == method_spec("seed").default_profile
