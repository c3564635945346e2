"""An inbox on object storage (S3 and compatible stores, through s3fs): find, claim, fetch, deliver. No Prefect here.

The folders ``paths.inbox``, ``outbox``, ``done`` and ``quarantine`` may be
URLs such as ``s3://bucket/inbox/``. A watcher takes an object by creating
its claim object ``<inbox>/.claims/<id>.json`` with ``If-None-Match: *``
(the store's put-if-absent, atomic across machines), fetches it into the
work folder by streaming, cleans it there as a local claim, and uploads the
result straight to its final key: an S3 object, single-part or multipart,
is visible only once complete, so nothing partial ever is. The original
leaves the inbox (copied to ``done``, then deleted) only once its output
exists; the claim is deleted last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from destatic import media
from destatic.errors import DestaticError, ParameterError
from destatic.inbox import STALE_RECORD_S, FailureRecord, failure_record, media_suffixes, quarantine, split_waiting, stamped_name
from destatic.media.atomic import process_alive, process_start
from destatic.settings import Folder, PathSettings, Settings, is_url

__all__ = [
    "CLAIMS",
    "FAILURES",
    "PART_BYTES",
    "RemoteClaim",
    "RemoteFile",
    "STAGING",
    "Staging",
    "Store",
    "StoreError",
    "claim",
    "deliver",
    "fetch",
    "find_ready",
    "open_store",
    "record_failure",
    "release",
    "release_stale_claims",
    "settle",
    "settle_done",
    "stage",
    "settle_quarantined",
]

CLAIMS = ".claims"
FAILURES = ".failures"
PART_BYTES = 8 * 2**20
"""Part size of multipart uploads (S3's least is 5 MiB); an output of more than two parts goes up in parts."""
_HOST = socket.gethostname()


class StoreError(DestaticError):
    """The object store cannot be used as set: unreachable, credentials refused, no such bucket; one line saying which."""


@dataclass(frozen=True)
class Store:
    """One folder on object storage: its file system (s3fs) and its root ``bucket/prefix`` (no trailing slash)."""

    fs: Any
    root: str
    url: str

    def key(self, relative: str) -> str:
        """The object key of `relative` (a POSIX path) under this folder."""
        return f"{self.root}/{relative}"


def open_store(url: str, settings: Settings) -> Store:
    """The store folder of `url`, its endpoint and credentials from ``watch.store_endpoint``/``store_profile`` or AWS's usual places.

    Raises
    ------
    StoreError
        s3fs is not installed (the ``s3`` extra), or the URL is not ``s3://``.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in ("s3", "s3a"):
        raise ParameterError(f"{url!r}: only s3:// URLs are object storage destatic reads")
    try:
        import s3fs
    except ImportError:
        raise StoreError(f"{url}: s3:// folders need the s3 extra: pip install 'destatic[s3]'") from None
    options: dict[str, Any] = {"use_listings_cache": False}
    if settings.watch.store_endpoint:
        options["endpoint_url"] = settings.watch.store_endpoint
    if settings.watch.store_profile:
        options["profile"] = settings.watch.store_profile
    return Store(s3fs.S3FileSystem(**options), rest.strip("/"), url)


def _explain(store: Store, error: Exception) -> StoreError:
    """The one line that says why the store refused or could not be reached."""
    endpoint = getattr(store.fs.s3, "meta", None)
    where = getattr(endpoint, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    reason = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, PermissionError):
        return StoreError(
            f"{store.url}: the object store at {where} refused these credentials ({reason}): check AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / watch.store_profile"
        )
    if isinstance(error, FileNotFoundError):
        return StoreError(f"{store.url}: no such bucket at {where}")
    return StoreError(f"{store.url}: the object store at {where} cannot be reached ({reason}); set AWS_ENDPOINT_URL or watch.store_endpoint")


def check_access(store: Store) -> None:
    """List the folder once, so that a wrong endpoint, bucket or credentials fail at once with one clear line."""
    try:
        store.fs.ls(store.root.partition("/")[0])
    except Exception as error:  # botocore's and aiohttp's errors have no common base but Exception
        raise _explain(store, error) from None


@dataclass(frozen=True)
class RemoteFile:
    """An object of the inbox: its path under the inbox, size, ETag and last-modified time (epoch seconds)."""

    relative: str
    size: int
    etag: str
    modified: float


def _identity(item: RemoteFile) -> str:
    """The name of its claim and failure record: this version of this object (a new upload starts again)."""
    return hashlib.sha256(f"{item.relative}\0{item.etag}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _as_file(store: Store, key: str, info: dict[str, Any]) -> RemoteFile:
    modified = info.get("LastModified")
    return RemoteFile(
        relative=key[len(store.root) + 1:],
        size=int(info.get("size", 0)),
        etag=str(info.get("ETag", "")).strip('"'),
        modified=modified.timestamp() if modified is not None else 0.0,
    )


def _listing(store: Store) -> dict[str, dict[str, Any]]:
    try:
        return store.fs.find(store.root, detail=True)
    except Exception as error:
        raise _explain(store, error) from None


def find_ready(store: Store, settings: Settings, *, now: float | None = None) -> tuple[list[RemoteFile], list[RemoteFile]]:
    """The inbox's objects to take now, and those left alone until ``watch.retry_after_s`` has passed since they failed.

    An object is ready when it has a media suffix, no part of its path is
    hidden (``.claims``, ``.failures``), and it has not changed for
    ``watch.stable_s`` (its last-modified time: an object is visible only
    once its upload completed, so this is the folders' rule, kept for the
    same meaning). Other destatic folders under the inbox are skipped.
    """
    now = time.time() if now is None else now
    suffixes = media_suffixes()
    others = [f"{str(getattr(settings.paths, name)).partition('://')[2].strip('/')}/" for name in ("outbox", "done", "quarantine")
              if is_url(getattr(settings.paths, name))]
    listing = _listing(store)
    records = {key.rpartition("/")[2] for key in listing if key.startswith(f"{store.root}/{FAILURES}/")}
    found = []
    for key, info in sorted(listing.items()):
        item = _as_file(store, key, info)
        parts = PurePosixPath(item.relative).parts
        if any(part.startswith(".") for part in parts) or any(key.startswith(other) for other in others):
            continue
        if PurePosixPath(item.relative).suffix.lower() in suffixes and now - item.modified >= settings.watch.stable_s:
            found.append(item)

    def record_of(item: RemoteFile) -> FailureRecord | None:
        return _read_record(store, item) if f"{_identity(item)}.json" in records else None

    return split_waiting(found, record_of, retry_after_s=settings.watch.retry_after_s, now=now)


@dataclass(frozen=True)
class RemoteClaim:
    """An inbox object this watcher holds: the object and its claim object's key."""

    item: RemoteFile
    key: str

    @property
    def name(self) -> str:
        """Its claim's id, a name for its work folder."""
        return PurePosixPath(self.key).stem


def claim(store: Store, item: RemoteFile) -> RemoteClaim | None:
    """Take one object of the inbox, or None if another watcher was first or the object changed.

    The claim object is created with ``If-None-Match: *``: of any number of
    watchers on any number of machines, exactly one creation succeeds. It
    holds host, pid and time, so that a dead owner's claim can be released.
    The object is checked again after: one replaced or removed meanwhile is
    not taken.
    """
    key = store.key(f"{CLAIMS}/{_identity(item)}.json")
    owner = {"file": item.relative, "etag": item.etag, "host": _HOST, "pid": os.getpid(), "started": process_start(os.getpid()), "time": time.time()}
    try:
        store.fs.pipe_file(key, json.dumps(owner).encode(), mode="create")
    except FileExistsError:
        return None
    except Exception as error:
        raise _explain(store, error) from None
    taken = RemoteClaim(item, key)
    try:
        now = _as_file(store, store.key(item.relative), store.fs.info(store.key(item.relative)))
    except FileNotFoundError:
        now = None
    if now is None or now.etag != item.etag:
        release(store, taken)
        return None
    return taken


def release(store: Store, taken: RemoteClaim) -> None:
    """Delete a claim: the object, if still in the inbox, may be taken again."""
    with contextlib.suppress(FileNotFoundError):
        store.fs.rm_file(taken.key)


def fetch(store: Store, taken: RemoteClaim, target: Path) -> Path:
    """Stream a claimed object into `target` (a local file, its folder made), never holding it whole in memory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    store.fs.get_file(store.key(taken.item.relative), os.fspath(target))
    return target


def deliver(local: Path, folder: Folder, relative: str, settings: Settings) -> str:
    """Copy a finished local file to ``folder/relative``, visible only once whole; return where it went.

    On object storage it goes straight to its final key, in parts of
    :data:`PART_BYTES` when larger than two (a multipart upload, visible at
    ``CompleteMultipartUpload`` only); in a local folder through a temporary
    name and a rename.
    """
    if is_url(folder):
        store = open_store(str(folder), settings)
        key = store.key(relative)
        store.fs.put_file(os.fspath(local), key, chunksize=PART_BYTES)
        return f"{str(folder).partition('://')[0]}://{key}"
    target = Path(folder).absolute() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial:
        shutil.copyfile(local, partial)
    return os.fspath(target)


def _leave_inbox(store: Store, taken: RemoteClaim, folder: Folder, relative: str, settings: Settings) -> str:
    """Move the claimed object to `folder` (``done`` or quarantine), copied first and deleted from the inbox after."""
    source = store.key(taken.item.relative)
    if is_url(folder):
        target = open_store(str(folder), settings)
        store.fs.copy(source, target.key(relative))
        where = f"{str(folder).partition('://')[0]}://{target.key(relative)}"
    else:
        target_path = Path(folder).absolute() / relative
        target_path.parent.mkdir(parents=True, exist_ok=True)
        with media.atomic_output(target_path) as partial:
            store.fs.get_file(source, os.fspath(partial))
        where = os.fspath(target_path)
    with contextlib.suppress(FileNotFoundError):
        store.fs.rm_file(source)
    return where


def _exists(folder: Folder, relative: str, settings: Settings) -> bool:
    if is_url(folder):
        store = open_store(str(folder), settings)
        return bool(store.fs.exists(store.key(relative)))
    return (Path(folder) / relative).exists()


def _free_relative(folder: Folder, relative: str, settings: Settings) -> str:
    """`relative`, or with a UTC time stamp added when `folder` already holds that name."""
    return str(stamped_name(PurePosixPath(relative))) if _exists(folder, relative, settings) else relative


def settle_done(store: Store, taken: RemoteClaim, outputs: list[tuple[Path, str]], settings: Settings) -> list[str]:
    """Deliver a cleaned object's outputs (local file, path under the outbox), then move the original to ``done``, then drop the claim.

    Returns where the outputs went. Killed at any point, the claim stays
    with the original in the inbox until the outputs are all up.
    """
    delivered = [deliver(local, settings.paths.outbox, relative, settings) for local, relative in outputs]
    _forget_failures(store, taken.item)
    _leave_inbox(store, taken, settings.paths.done, _free_relative(settings.paths.done, taken.item.relative, settings), settings)
    release(store, taken)
    return delivered


def settle_quarantined(store: Store, taken: RemoteClaim, note: Path, settings: Settings) -> str:
    """Move a bad object to quarantine beside its ``NAME.error.txt`` (made locally by :func:`destatic.inbox.quarantine`); drop the claim."""
    relative = _free_relative(settings.paths.quarantine, taken.item.relative, settings)
    deliver(note, settings.paths.quarantine, f"{relative}.error.txt", settings)
    where = _leave_inbox(store, taken, settings.paths.quarantine, relative, settings)
    _forget_failures(store, taken.item)
    release(store, taken)
    return where


def _record_key(store: Store, item: RemoteFile) -> str:
    return store.key(f"{FAILURES}/{_identity(item)}.json")


def _read_record(store: Store, item: RemoteFile) -> FailureRecord | None:
    try:
        return FailureRecord(**json.loads(store.fs.cat_file(_record_key(store, item))))
    except (OSError, ValueError, TypeError):
        return None


def _forget_failures(store: Store, item: RemoteFile) -> None:
    with contextlib.suppress(FileNotFoundError):
        store.fs.rm_file(_record_key(store, item))


def record_failure(store: Store, taken: RemoteClaim, *, step: str, reason: str) -> int:
    """Count one failure of a claimed object for a reason other than its content; return the count so far, the claim dropped."""
    previous = _read_record(store, taken.item)
    failures = (previous.failures if previous is not None else 0) + 1
    entry = FailureRecord(file=taken.item.relative, failures=failures, step=step, reason=reason, time=time.time())
    store.fs.pipe_file(_record_key(store, taken.item), json.dumps(entry.__dict__).encode())
    release(store, taken)
    return failures


STAGING = "store"
"""Folder of the work folder where claimed objects are cleaned, one subfolder per claim."""


@dataclass(frozen=True)
class Staging:
    """A claimed object fetched into a folder of its own under the work folder, and the settings of its local run there.

    Its run is an ordinary one of a local inbox (``<folder>/inbox``), with
    its own outbox, ``done`` and quarantine in `folder`, and the real work
    folder (so the step cache is shared).
    """

    taken: RemoteClaim
    folder: Path
    settings: Settings

    @property
    def file(self) -> Path:
        """The fetched object in the staging inbox."""
        return self.folder / "inbox" / PurePosixPath(self.taken.item.relative)

    def outputs(self) -> list[tuple[Path, str]]:
        """The outputs its run made, with their paths under the outbox."""
        root = self.folder / "outbox"
        return [(path, path.relative_to(root).as_posix()) for path in sorted(root.rglob("*")) if path.is_file()]

    def error_note(self) -> Path | None:
        """The ``NAME.error.txt`` of its file if its run quarantined it, else None."""
        return next(iter(sorted((self.folder / "quarantine").rglob("*.error.txt"))), None)

    def discard(self) -> None:
        """Delete the staging folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def stage(store: Store, taken: RemoteClaim, settings: Settings) -> Staging:
    """Fetch a claimed object into ``<work>/store/<claim id>/inbox`` (:func:`fetch`) and return its :class:`Staging`."""
    folder = Path(settings.paths.work).absolute() / STAGING / taken.name
    shutil.rmtree(folder, ignore_errors=True)
    local = PathSettings(**{name: folder / name for name in ("inbox", "outbox", "done", "quarantine")}, work=settings.paths.work)
    staging = Staging(taken, folder, settings.model_copy(update={"paths": local}))
    fetch(store, taken, staging.file)
    return staging


def settle(store: Store, staging: Staging, settings: Settings, *, cleaned: bool, reason: str) -> dict[str, str]:
    """Carry the outcome of a staged run back to the store; return where things went (``output``, ``quarantined``).

    Cleaned: its outputs to the outbox, then the original to ``done``.
    Quarantined by its run (bad input): the original and its note to
    quarantine. Otherwise (a failure not of its content) it stays in the
    inbox, its failure counted, and goes to quarantine at the
    ``watch.max_attempts``-th. The claim is dropped in every case.
    """
    taken = staging.taken
    if cleaned:
        delivered = settle_done(store, taken, staging.outputs(), settings)
        return {"output": next((where for where in delivered if "-residue." not in PurePosixPath(where).name), delivered[0])}
    note = staging.error_note()
    if note is None:
        record = failure_record(staging.folder / "inbox", Path(taken.item.relative))
        step = record.step if record is not None else "claim"
        failures = record_failure(store, taken, step=step, reason=reason)
        if failures < settings.watch.max_attempts:
            return {}
        why = f"failed {failures} times for reasons other than its content (watch.max_attempts={settings.watch.max_attempts}); last: {reason}"
        quarantine(staging.file, staging.folder / "quarantine", relative=Path(taken.item.relative), step=step, reason=why)
        note = staging.error_note()
    assert note is not None
    return {"quarantined": settle_quarantined(store, taken, note, settings)}


def release_stale_claims(store: Store) -> list[str]:
    """Delete the claims nobody will settle: those of a dead process of this host, and those whose object has left the inbox.

    A claim of another host is left to that host's watchers (a process id
    means nothing elsewhere); one whose object is gone is deleted once
    :data:`~destatic.inbox.STALE_RECORD_S` old. Returns the files given back.
    """
    released = []
    try:
        claims = store.fs.find(store.key(CLAIMS), detail=True)
    except FileNotFoundError:
        return released
    for key, info in claims.items():
        try:
            owner = json.loads(store.fs.cat_file(key))
        except (OSError, ValueError):
            continue
        mine_and_dead = owner.get("host") == _HOST and not process_alive(int(owner.get("pid", 0)), owner.get("started"))
        modified = info.get("LastModified")
        old = modified is not None and time.time() - modified.timestamp() > STALE_RECORD_S
        if mine_and_dead or (old and not store.fs.exists(store.key(owner.get("file", "")))):
            with contextlib.suppress(FileNotFoundError):
                store.fs.rm_file(key)
            released.append(owner.get("file", ""))
    return released
