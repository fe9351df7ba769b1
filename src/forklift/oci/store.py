"""The content-addressed store: blobs by digest, named references, and leases for running builds.

Layout under the root directory (every path is named by ``oci.storelayout.StoreLayout``,
``Store.layout``; other parts of forklift reach their directories through it)::

    blobs/sha256/<hex>      content, named by its digest (sha512 likewise)
    tmp/                    blobs being written (invisible until renamed into blobs/)
    refs.json               name -> digest, replaced atomically; refs.lock serialises writers
    roots/<owner>           digests another part of forklift keeps alive (the build cache)
    compressed/<c>/<diff>   the gzip/zstd form made of an uncompressed layer (made once, reused)
    leases/<id>             digests a running build needs; locked while the build lives
    gc.lock                 puts and ref updates hold it shared; prune holds it exclusively
    cache/, snapshots/      owned by the build cache and the snapshotter

Promises (each has a test in tests/unit/oci/test_store.py):

* ``put_*`` is atomic: content goes to a temp file in ``tmp/``, is fsynced, then renamed into place,
  so a blob path either does not exist or holds the complete content.
* ``put_*`` is idempotent: putting content that is already present changes nothing.
* ``put_*`` checks the digest (and size) it was promised and raises DigestMismatch, storing nothing.
* ``open_blob``/``read_blob`` check size and digest and raise DigestMismatch on corrupt content.
* Several processes can use one store at once: reference updates are serialised with a file lock
  (no lost updates), and prune never removes a blob a concurrent put or lease is about to use.
* A crash at any point leaves no partial blob visible and no reference to a missing blob
  (``set_ref`` refuses a digest the store does not hold; refs.json is replaced atomically).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from forklift.errors import DigestMismatch, ImageError
from forklift.fsatomic import atomic_write, fsync_dir

if TYPE_CHECKING:
    from concurrent.futures import Future
from forklift.oci.model import Digest, child_descriptors
from forklift.oci.storelayout import StoreLayout
from forklift.records import record

_CHUNK = 1 << 20
_ALGORITHMS = ("sha256", "sha512")
# Blobs up to this size that start with "{" are parsed during prune to follow manifests and indexes.
_MAX_WALK_BLOB = 4 << 20


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@record
class PruneResult:
    """What prune removed: blob count and bytes freed (blobs plus abandoned temp files)."""

    removed: int
    freed_bytes: int


_WRITEBACK_CHUNK = 8 << 20


def start_writeback(fd: int, offset: int, length: int) -> None:
    """``sync_file_range(SYNC_FILE_RANGE_WRITE)``: begin writing a file range back, don't wait.

    A hint only: where the call is missing, the fsync that follows does all the work.
    """
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure is harmless


@functools.cache
def _sync_file_range() -> Any:
    """libc's sync_file_range (Linux), looked up once; None where there is none."""
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


class BlobPublisher:
    """Finishes blob commits on worker threads: the fsync, the move into place, the lease record.

    A build step that wrote a 20 MB layer need not wait the 40-80 ms it takes to reach the disk;
    the build waits once (``wait``) before anything refers to its blobs (an image, a ref, an
    export). Until then ``Store.has`` does not see them. Use as a context manager: leaving it
    waits for every job, so no temp file is left open.
    """

    def __init__(self, workers: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forklift-blob")
        self._lock = threading.Lock()
        self._pending: list[Future[None]] = []

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` (a commit's second half) on a worker."""
        future = self._pool.submit(job)
        with self._lock:
            self._pending.append(future)

    def wait(self) -> None:
        """Return once every submitted blob is in place; raise the first job's error."""
        with self._lock:
            pending, self._pending = self._pending, []
        errors = [err for err in (f.exception() for f in pending) if err is not None]
        if errors:
            raise errors[0]

    def __enter__(self) -> BlobPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.wait()
            else:
                with contextlib.suppress(Exception):  # the error on its way out matters more
                    self.wait()
        finally:
            self._pool.shutdown(wait=True)


class BlobWriter:
    """A file-like sink that hashes what is written and becomes a blob on ``commit``.

    Use as a context manager; leaving it without ``commit`` discards the temp file.
    """

    def __init__(self, store: Store, algorithm: str = "sha256") -> None:
        self._store = store
        self._path = store.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        self._hash = _new_hash(algorithm)
        # Kept flock'ed while open: prune deletes only temp files nobody holds. Created under the
        # shared gc lock so prune never sees the file between its creation and its lock.
        with _flock(store.layout.gc_lock, fcntl.LOCK_SH):
            self._fh: IO[bytes] = open(self._path, "xb")  # noqa: SIM115 - closed in commit/abort
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        self._algorithm = algorithm
        self._size = 0
        self._written_back = 0  # bytes handed to the kernel's writeback so far
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write and hash ``data``."""
        self._hash.update(data)
        n = self._fh.write(data)
        self._size += n
        if self._size - self._written_back >= _WRITEBACK_CHUNK:
            self._start_writeback()
        return n

    def _start_writeback(self) -> None:
        # Start writing what we have to disk now, without waiting: the fsync at commit then finds
        # it written, instead of flushing tens of MB in one go (which stalls every other metadata
        # operation on the filesystem behind its journal commit).
        self._fh.flush()
        start_writeback(self._fh.fileno(), self._written_back, self._size - self._written_back)
        self._written_back = self._size

    def writable(self) -> bool:
        """Always True (file-like protocol)."""
        return True

    def written_sha256(self) -> tuple[str, int] | None:
        """(hex sha256, size) of what was written so far, when this writer hashes with sha256.

        A layer writer streaming an uncompressed tar in here uses it as the diff_id instead of
        hashing every byte a second time (compression.DigestingSink).
        """
        if self._algorithm != "sha256":
            return None
        return self._hash.copy().hexdigest(), self._size

    def flush(self) -> None:
        """Flush Python's buffer (durability comes from commit's fsync)."""
        self._fh.flush()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def commit(
        self,
        expected: Digest | None = None,
        *,
        size: int | None = None,
        lease: Lease | None = None,
        publisher: BlobPublisher | None = None,
    ) -> tuple[Digest, int]:
        """Fsync and move the content into place; returns (digest, size).

        Raises DigestMismatch (and stores nothing) when ``expected`` or ``size`` do not match.
        With ``lease``, the blob is recorded in the lease before prune can see it. With
        ``publisher``, the digest is checked now and the fsync and the move happen on its worker:
        the blob is in the store once ``publisher.wait()`` returns.
        """
        if self._done:
            raise ValueError("blob writer already finished")
        digest = Digest(self._algorithm, self._hash.hexdigest())
        handed_off = False
        try:
            if expected is not None and expected != digest:
                raise DigestMismatch(f"content has digest {digest}, expected {expected}")
            if size is not None and size != self._size:
                raise DigestMismatch(f"content of {digest} is {self._size} bytes, expected {size}")
            self._fh.flush()
            if publisher is not None:
                self._done = True  # from now on the publisher's job owns the temp file
                handed_off = True
                publisher.submit(lambda: self._finish(digest, lease))
            else:
                self._finish(digest, lease)
        finally:
            if not handed_off:
                self.abort()
        return digest, self._size

    def _finish(self, digest: Digest, lease: Lease | None) -> None:
        try:
            os.fsync(self._fh.fileno())
            self._store._publish(self._path, digest, lease)
        finally:
            self._fh.close()
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def abort(self) -> None:
        """Discard the temp file (a no-op after commit)."""
        if not self._done:
            self._done = True
            self._fh.close()
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


def _new_hash(algorithm: str) -> Any:
    import hashlib

    if algorithm not in _ALGORITHMS:
        raise ImageError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


class _VerifyingReader(io.RawIOBase):
    """Reads a blob, hashing as it goes; at end of file a wrong digest or size raises DigestMismatch."""

    def __init__(self, fh: BinaryIO, digest: Digest, size: int) -> None:
        super().__init__()
        self._fh = fh
        self._digest = digest
        self._expected_size = size
        self._hash = digest.hasher()
        self._read = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = self._fh.readinto(view)  # type: ignore[attr-defined]
        if n:
            self._hash.update(view[:n])
            self._read += n
            if self._read > self._expected_size:
                raise DigestMismatch(f"blob {self._digest} is larger than its recorded size")
        elif not self._checked and len(view):
            self._checked = True
            if self._read != self._expected_size or self._hash.hexdigest() != self._digest.hex:
                raise DigestMismatch(f"blob {self._digest} is corrupt: its content does not match its digest")
        return n or 0

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


class Lease:
    """Digests a running build needs: prune keeps them while the lease is held.

    The lease file stays flock'ed by its owner; prune treats an unlocked lease file as abandoned
    (its process died) and deletes it. Use as a context manager, or call ``release``.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.path = store.layout.leases / f"{os.getpid()}-{uuid.uuid4().hex}"
        with _flock(store.layout.gc_lock, fcntl.LOCK_SH):  # prune never sees it unlocked
            self._fh: IO[bytes] = open(self.path, "xb")  # noqa: SIM115 - closed in release
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)

    def _record(self, digests: Iterable[Digest]) -> None:
        data = "".join(f"{d}\n" for d in digests).encode()
        if data:
            self._fh.write(data)
            self._fh.flush()

    def add(self, *digests: Digest) -> None:
        """Keep ``digests`` (already in the store) alive; ImageError if one is missing."""
        with _flock(self._store.layout.gc_lock, fcntl.LOCK_SH):
            missing = [d for d in digests if not self._store.has(d)]
            if missing:
                raise ImageError(f"blob {missing[0]} is not in the store")
            self._record(digests)

    def release(self) -> None:
        """Drop the lease."""
        if not self._fh.closed:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._fh.close()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Store:
    """A content-addressed blob store with named references at ``root`` (created when missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.layout = layout = StoreLayout(self.root)
        for algorithm in _ALGORITHMS:
            layout.blobs.joinpath(algorithm).mkdir(parents=True, exist_ok=True)
        for directory in (layout.tmp, layout.roots, layout.leases, layout.cache, layout.snapshots):
            directory.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = layout.tmp
        self.cache_dir = layout.cache
        self.snapshots_dir = layout.snapshots
        self._refs_path = layout.refs
        self._gc_lock = layout.gc_lock

    # ---- blobs -------------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        """Where the blob for ``digest`` lives (it may not exist)."""
        return self.layout.blob(digest.algorithm, digest.hex)

    def has(self, digest: Digest) -> bool:
        """Whether the store holds the blob."""
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: Digest) -> int:
        """The size of a stored blob; ImageError when it is missing."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store") from None

    def list_blobs(self) -> Iterator[Digest]:
        """Every stored blob's digest."""
        for algorithm in _ALGORITHMS:
            for path in (self.layout.blobs / algorithm).iterdir():
                with contextlib.suppress(ImageError):
                    yield Digest(algorithm, path.name)

    def writer(self, algorithm: str = "sha256") -> BlobWriter:
        """A BlobWriter for content produced piecewise (a layer being compressed, a download)."""
        return BlobWriter(self, algorithm)

    def put_bytes(self, data: bytes, expected: Digest | None = None, *, lease: Lease | None = None) -> Digest:
        """Store ``data``; returns its digest. DigestMismatch when it does not match ``expected``."""
        algorithm = expected.algorithm if expected is not None else "sha256"
        digest = Digest.of(data, algorithm)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"content has digest {digest}, expected {expected}")
        if self.has(digest) and lease is None:
            return digest  # idempotent: the same content is already there
        with self.writer(algorithm) as w:
            w.write(data)
            w.commit(digest, lease=lease)
        return digest

    def put_stream(
        self,
        fileobj: BinaryIO,
        expected: Digest | None = None,
        *,
        size: int | None = None,
        lease: Lease | None = None,
    ) -> tuple[Digest, int]:
        """Store what ``fileobj`` yields, hashing while copying; returns (digest, size).

        When ``expected`` is already stored the stream is not read at all (its content is known).
        DigestMismatch when the content does not match ``expected`` or ``size``.
        """
        if expected is not None and self.has(expected):
            stored = self.blob_size(expected)
            if size is not None and size != stored:
                raise DigestMismatch(f"blob {expected} is {stored} bytes, expected {size}")
            if lease is not None:
                lease.add(expected)
            return expected, stored
        with self.writer(expected.algorithm if expected is not None else "sha256") as w:
            readinto = getattr(fileobj, "readinto", None)
            if readinto is not None:
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                while n := readinto(buf):
                    w.write(view[:n])
            else:
                while chunk := fileobj.read(_CHUNK):
                    w.write(chunk)
            return w.commit(expected, size=size, lease=lease)

    def put_file(
        self, path: Path, expected: Digest | None = None, *, lease: Lease | None = None
    ) -> tuple[Digest, int]:
        """Store a file's content (copied, the file is left alone); returns (digest, size)."""
        with open(path, "rb") as fh:
            return self.put_stream(fh, expected, lease=lease)

    def _publish(self, tmp: Path, digest: Digest, lease: Lease | None) -> None:
        dest = self.blob_path(digest)
        # Shared gc lock: prune cannot run between the rename and the lease record.
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            if not dest.exists():
                os.rename(tmp, dest)
                fsync_dir(dest.parent)
            if lease is not None:
                lease._record([digest])

    def open_blob(self, digest: Digest, *, size: int | None = None) -> BinaryIO:
        """A stream of the blob that raises DigestMismatch at end of file if the content is corrupt.

        ``size`` (from a descriptor) is checked up front. Verification needs the stream read to the
        end; callers that stop early (a tar reader at the end-of-archive marker) get no check.
        """
        path = self.blob_path(digest)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - owned by the returned reader
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store") from None
        actual = os.fstat(fh.fileno()).st_size
        if size is not None and size != actual:
            fh.close()
            raise DigestMismatch(f"blob {digest} is {actual} bytes, expected {size}")
        return cast(BinaryIO, io.BufferedReader(_VerifyingReader(fh, digest, actual), buffer_size=_CHUNK))

    def read_blob(self, digest: Digest, *, size: int | None = None) -> bytes:
        """The whole blob, verified (for manifests and configs)."""
        with self.open_blob(digest, size=size) as fh:
            return fh.read()

    def verify(self, digest: Digest) -> None:
        """Read the whole blob and raise DigestMismatch if it is corrupt."""
        with self.open_blob(digest) as fh:
            while fh.read(_CHUNK):
                pass

    # ---- compressed forms of uncompressed layers ------------------------------------------------------

    def record_compressed(self, diff_id: Digest, compression: str, digest: Digest, size: int) -> None:
        """Remember that ``digest`` (stored) is ``diff_id``'s layer compressed with ``compression``."""
        if compression not in ("gzip", "zstd"):
            raise ImageError(f"unknown compression {compression!r}")
        path = self.layout.compressed / compression / f"{diff_id.algorithm}-{diff_id.hex}"
        atomic_write(path, f"{digest}\n{size}\n", durable=True, parents=True)

    def find_compressed(self, diff_id: Digest, compression: str) -> tuple[Digest, int] | None:
        """(digest, size) of a stored ``compression`` form of the layer ``diff_id``, if one was made
        and prune has not removed it."""
        path = self.layout.compressed / compression / f"{diff_id.algorithm}-{diff_id.hex}"
        try:
            text, size_text = path.read_text().split()[:2]
            digest = Digest.parse(text)
            size = int(size_text)
        except (FileNotFoundError, ValueError, ImageError):
            return None
        if not self.has(digest) or self.blob_size(digest) != size:
            return None
        return digest, size

    # ---- references -------------------------------------------------------------------------------

    def list_refs(self) -> dict[str, Digest]:
        """Every reference name and the digest it points at, sorted by name."""
        try:
            raw = self._refs_path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            return {name: Digest.parse(d) for name, d in sorted(data["refs"].items())}
        except (ValueError, KeyError, TypeError, ImageError) as err:
            raise ImageError(f"{self._refs_path} is corrupt: {err}") from None

    def get_ref(self, name: str) -> Digest | None:
        """The digest ``name`` points at, or None."""
        return self.list_refs().get(name)

    def set_ref(self, name: str, digest: Digest) -> None:
        """Point ``name`` at ``digest``, which must already be stored (no dangling references)."""
        if not name or "\n" in name:
            raise ImageError(f"invalid reference name {name!r}")
        with _flock(self._gc_lock, fcntl.LOCK_SH), _flock(self.layout.refs_lock, fcntl.LOCK_EX):
            if not self.has(digest):
                raise ImageError(f"cannot name {name}: blob {digest} is not in the store")
            refs = self.list_refs()
            refs[name] = digest
            self._write_refs(refs)

    def delete_ref(self, name: str) -> bool:
        """Remove a reference; returns whether it existed. Blobs stay until prune."""
        with _flock(self.layout.refs_lock, fcntl.LOCK_EX):
            refs = self.list_refs()
            if refs.pop(name, None) is None:
                return False
            self._write_refs(refs)
            return True

    def _write_refs(self, refs: dict[str, Digest]) -> None:
        body = {"refs": {n: str(d) for n, d in sorted(refs.items())}}
        atomic_write(self._refs_path, json.dumps(body, indent=1).encode() + b"\n", durable=True)

    # ---- roots, leases, prune ---------------------------------------------------------------------

    def set_roots(self, owner: str, digests: Iterable[Digest]) -> None:
        """Replace the set of digests ``owner`` (e.g. "cache") keeps alive across prune."""
        if not owner or "/" in owner or owner.startswith("."):
            raise ImageError(f"invalid roots owner {owner!r}")
        data = "".join(f"{d}\n" for d in sorted(set(digests))).encode()
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            atomic_write(self.layout.roots / owner, data, durable=True)

    def get_roots(self, owner: str) -> set[Digest]:
        """The digests ``owner`` keeps alive."""
        try:
            return _read_digest_lines((self.layout.roots / owner).read_bytes())
        except FileNotFoundError:
            return set()

    def lease(self) -> Lease:
        """A new lease: digests added to it survive prune until it is released."""
        return Lease(self)

    def prune(self, keep: Iterable[Digest] = ()) -> PruneResult:
        """Remove every blob not reachable from a reference, a roots file, a live lease or ``keep``.

        Reachability follows manifests and indexes to their configs, layers and child manifests.
        Abandoned temp files and leases of dead processes are removed too.
        """
        removed = 0
        freed = 0
        with _flock(self._gc_lock, fcntl.LOCK_EX), _flock(self.layout.refs_lock, fcntl.LOCK_EX):
            # Temp files of reference and roots updates that a crash interrupted: nobody writes them
            # now (both writers hold a lock prune holds exclusively).
            refs_temps = self.root.glob(f".{self._refs_path.name}.*.tmp")
            for stale in [*refs_temps, *self.layout.roots.glob(".*.tmp")]:
                with contextlib.suppress(FileNotFoundError):
                    freed += stale.stat().st_size
                    stale.unlink()
            roots: set[Digest] = set(keep)
            roots.update(self.list_refs().values())
            for path in self.layout.roots.iterdir():
                if not path.name.startswith("."):
                    roots |= _read_digest_lines(path.read_bytes())
            for path in self.layout.leases.iterdir():
                live = _locked_by_someone(path)
                if live is None:
                    continue
                if live:
                    roots |= _read_digest_lines(path.read_bytes())
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            marked = self._mark(roots)
            for digest in list(self.list_blobs()):
                if digest in marked:
                    continue
                path = self.blob_path(digest)
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    removed += 1
                    freed += size
            for path in self.layout.compressed.glob("*/*"):
                # A record of a compressed form that was just removed (or never completed) goes too.
                with contextlib.suppress(OSError, ValueError, IndexError, ImageError):
                    if not path.name.startswith(".") and not self.has(
                        Digest.parse(path.read_text().split()[0])
                    ):
                        path.unlink()
            for path in self.tmp_dir.iterdir():
                if _locked_by_someone(path) is False:
                    with contextlib.suppress(FileNotFoundError):
                        size = path.stat().st_size
                        path.unlink()
                        freed += size
        return PruneResult(removed=removed, freed_bytes=freed)

    def _mark(self, roots: Iterable[Digest]) -> set[Digest]:
        marked: set[Digest] = set()
        todo = list(roots)
        while todo:
            digest = todo.pop()
            if digest in marked or not self.has(digest):
                continue
            marked.add(digest)
            path = self.blob_path(digest)
            if path.stat().st_size > _MAX_WALK_BLOB:
                continue
            raw = path.read_bytes()
            if raw.lstrip()[:1] == b"{":
                todo.extend(d.digest for d in child_descriptors(raw))
        return marked


def _read_digest_lines(raw: bytes) -> set[Digest]:
    out: set[Digest] = set()
    for line in raw.decode(errors="replace").splitlines():
        with contextlib.suppress(ImageError):
            out.add(Digest.parse(line.strip()))  # a torn last line (crash mid-append) is skipped
    return out


def _locked_by_someone(path: Path) -> bool | None:
    """Whether another open file holds a flock on ``path``; None when the file vanished."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        fh.close()
    return False
