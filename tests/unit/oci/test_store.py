"""The content store's promises, one test (at least) each, including crashes and concurrent processes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from forklift.errors import DigestMismatch, ImageError
from forklift.oci.model import Descriptor, Digest, Manifest, MediaType
from forklift.oci.store import Store


def test_layout_dirs_exist(store_root: Path) -> None:
    s = Store(store_root)
    for sub in ("blobs/sha256", "tmp", "cache", "snapshots", "leases", "roots"):
        assert (store_root / sub).is_dir()
    assert s.cache_dir == store_root / "cache" and s.snapshots_dir == store_root / "snapshots"


def test_put_bytes_stores_by_digest_and_is_idempotent(store_root: Path) -> None:
    s = Store(store_root)
    d = s.put_bytes(b"hello")
    assert d == Digest.of(b"hello")
    assert s.blob_path(d) == store_root / "blobs" / "sha256" / d.hex
    assert s.blob_path(d).read_bytes() == b"hello"
    mtime = s.blob_path(d).stat().st_mtime_ns
    assert s.put_bytes(b"hello", d) == d
    assert s.put_stream(io.BytesIO(b"hello")) == (d, 5)
    assert s.blob_path(d).stat().st_mtime_ns == mtime
    assert list(s.list_blobs()) == [d]
    assert list((store_root / "tmp").iterdir()) == []


def test_put_checks_promised_digest_and_size(store_root: Path) -> None:
    s = Store(store_root)
    wrong = Digest.of(b"other")
    with pytest.raises(DigestMismatch):
        s.put_bytes(b"hello", wrong)
    with pytest.raises(DigestMismatch):
        s.put_stream(io.BytesIO(b"hello"), wrong)
    with pytest.raises(DigestMismatch):
        s.put_stream(io.BytesIO(b"hello"), Digest.of(b"hello"), size=4)
    assert list(s.list_blobs()) == [] and list((store_root / "tmp").iterdir()) == []


def test_put_stream_sha512_and_put_file(store_root: Path, tmp_path: Path) -> None:
    s = Store(store_root)
    data = os.urandom(3 << 20)
    d512 = Digest.of(data, "sha512")
    assert s.put_stream(io.BytesIO(data), d512) == (d512, len(data))
    assert s.read_blob(d512) == data
    f = tmp_path / "f"
    f.write_bytes(data)
    d, size = s.put_file(f)
    assert d == Digest.of(data) and size == len(data) and f.exists()


def test_put_stream_skips_reading_known_content(store_root: Path) -> None:
    s = Store(store_root)
    d = s.put_bytes(b"x" * 10)

    class Exploding(io.RawIOBase):
        def readinto(self, b: object) -> int:
            raise AssertionError("read although the blob is stored")

    assert s.put_stream(Exploding(), d) == (d, 10)  # type: ignore[arg-type]


def test_open_verifies_digest_and_size(store_root: Path) -> None:
    s = Store(store_root)
    d = s.put_bytes(b"good content")
    assert s.read_blob(d, size=12) == b"good content"
    with pytest.raises(DigestMismatch):
        s.open_blob(d, size=11)
    path = s.blob_path(d)
    path.chmod(0o644)
    path.write_bytes(b"evil content")  # same size, other bytes
    with pytest.raises(DigestMismatch):
        s.read_blob(d)
    with pytest.raises(DigestMismatch):
        s.verify(d)
    path.write_bytes(b"good content plus")
    with pytest.raises(DigestMismatch):
        s.read_blob(d)
    with pytest.raises(ImageError, match="not in the store"):
        s.open_blob(Digest.of(b"missing"))


def test_blob_writer_commit_and_abort(store_root: Path) -> None:
    s = Store(store_root)
    with s.writer() as w:
        w.write(b"abc")
        w.write(memoryview(b"def"))
        d, size = w.commit(Digest.of(b"abcdef"))
    assert (d, size) == (Digest.of(b"abcdef"), 6) and s.has(d)
    with s.writer() as w:
        w.write(b"dropped")
    assert not s.has(Digest.of(b"dropped")) and list(s.tmp_dir.iterdir()) == []


def test_refs_set_get_delete_and_no_dangling(store_root: Path) -> None:
    s = Store(store_root)
    d = s.put_bytes(b"m")
    s.set_ref("docker.io/library/busybox:latest", d)
    assert s.get_ref("docker.io/library/busybox:latest") == d
    assert s.list_refs() == {"docker.io/library/busybox:latest": d}
    with pytest.raises(ImageError, match="not in the store"):
        s.set_ref("x:y", Digest.of(b"never stored"))
    assert Store(store_root).list_refs() == {"docker.io/library/busybox:latest": d}
    assert s.delete_ref("docker.io/library/busybox:latest") and not s.delete_ref("nope")
    assert s.get_ref("docker.io/library/busybox:latest") is None


def _image(s: Store, tag: bytes) -> tuple[Digest, list[Digest]]:
    cfg = s.put_bytes(b'{"config":' + tag + b"}")
    layer = s.put_bytes(b"layer" + tag)
    shared = s.put_bytes(b"shared layer")
    m = Manifest(
        config=Descriptor(MediaType.OCI_CONFIG, cfg, s.blob_size(cfg)),
        layers=(
            Descriptor(MediaType.OCI_LAYER, layer, s.blob_size(layer)),
            Descriptor(MediaType.OCI_LAYER, shared, s.blob_size(shared)),
        ),
    )
    return s.put_bytes(m.to_bytes()), [cfg, layer, shared]


def test_prune_keeps_reachable_and_reports_freed_bytes(store_root: Path) -> None:
    s = Store(store_root)
    m1, blobs1 = _image(s, b"1")
    m2, blobs2 = _image(s, b"2")
    orphan = s.put_bytes(b"o" * 100)
    cache_blob = s.put_bytes(b"cached layer")
    kept = s.put_bytes(b"kept by argument")
    s.set_ref("a:1", m1)
    s.set_ref("b:2", m2)
    s.set_roots("cache", [cache_blob])
    assert s.prune(keep=[kept]).freed_bytes == 100
    assert not s.has(orphan)
    assert all(s.has(d) for d in [m1, m2, cache_blob, kept, *blobs1, *blobs2])
    s.delete_ref("b:2")
    result = s.prune()
    assert result.removed == 4  # manifest, config and layer of b; the shared layer stays; kept goes
    assert not s.has(m2) and not s.has(blobs2[1]) and s.has(blobs2[2]) and s.has(m1)
    s.set_roots("cache", [])
    s.prune()
    assert not s.has(cache_blob)


def test_lease_protects_blobs_until_released(store_root: Path) -> None:
    s = Store(store_root)
    with s.lease() as lease:
        d = s.put_bytes(b"build output", lease=lease)
        d2, _ = s.put_stream(io.BytesIO(b"more output"), lease=lease)
        old = s.put_bytes(b"base layer")
        lease.add(old)
        s.prune()
        assert s.has(d) and s.has(d2) and s.has(old)
        with pytest.raises(ImageError):
            lease.add(Digest.of(b"absent"))
    s.prune()
    assert not s.has(d) and not s.has(old)


_HELPER = textwrap.dedent(
    """
    import io, os, sys, time
    from pathlib import Path
    from forklift.oci.store import Store
    from forklift.oci.model import Digest

    s = Store(Path(sys.argv[1]))
    mode = sys.argv[2]
    if mode == "slow-put":
        class Slow(io.RawIOBase):
            n = 0
            def readable(self): return True
            def readinto(self, b):
                if self.n == 5:
                    print("writing", flush=True)
                if self.n > 5:
                    time.sleep(0.05)
                self.n += 1
                b[:4096] = b"x" * 4096
                return 4096
        s.put_stream(Slow())
    elif mode == "lease":
        lease = s.lease()
        d = s.put_bytes(b"leased by a process that dies", lease=lease)
        print("leased", flush=True)
        time.sleep(60)
    elif mode == "put-same":
        data = bytes(range(256)) * 8192
        for _ in range(5):
            d, _ = s.put_stream(io.BytesIO(data))
            s.set_ref(sys.argv[3], d)
    elif mode == "refs":
        d = s.put_bytes(sys.argv[3].encode())
        for i in range(int(sys.argv[4])):
            s.set_ref(f"{sys.argv[3]}:{i}", d)
            if len(sys.argv) > 5:
                print("set", flush=True)
    """
)


def _helper(store_root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HELPER, str(store_root), *args], stdout=subprocess.PIPE, text=True
    )


def test_crash_mid_put_leaves_no_partial_blob(store_root: Path) -> None:
    s = Store(store_root)
    proc = _helper(store_root, "slow-put")
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(s.list_blobs()) == []
    leftovers = list(s.tmp_dir.iterdir())
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the crash happened mid-write
    result = s.prune()
    assert result.freed_bytes > 0 and list(s.tmp_dir.iterdir()) == []


def test_lease_of_a_dead_process_is_dropped(store_root: Path) -> None:
    s = Store(store_root)
    proc = _helper(store_root, "lease")
    assert proc.stdout is not None and proc.stdout.readline() == "leased\n"
    d = Digest.of(b"leased by a process that dies")
    s.prune()
    assert s.has(d)  # the process lives: its lease holds
    proc.kill()
    proc.wait()
    s.prune()
    assert not s.has(d) and list((store_root / "leases").iterdir()) == []


def test_crash_mid_ref_update_leaves_refs_readable(store_root: Path) -> None:
    s = Store(store_root)
    for attempt in range(3):
        proc = _helper(store_root, "refs", f"n{attempt}", "100000", "verbose")
        assert proc.stdout is not None
        for _ in range(5 + attempt * 7):
            proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        refs = s.list_refs()  # never a torn refs.json
        assert refs and all(s.has(d) for d in refs.values())
        assert all(name.startswith("n") for name in refs)
    s.prune()  # a temp refs file a crash left behind is cleaned up
    assert not [p for p in store_root.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_processes_lose_no_ref_updates(store_root: Path) -> None:
    procs = [_helper(store_root, "refs", f"p{i}", "15") for i in range(4)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    refs = Store(store_root).list_refs()
    assert len(refs) == 60 and {f"p{i}:{j}" for i in range(4) for j in range(15)} == set(refs)


def test_concurrent_puts_of_the_same_blob(store_root: Path) -> None:
    procs = [_helper(store_root, "put-same", f"n{i}:1") for i in range(4)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    s = Store(store_root)
    [digest] = list(s.list_blobs())
    assert digest == Digest.of(bytes(range(256)) * 8192)
    s.verify(digest)
    assert list(s.tmp_dir.iterdir()) == [] and set(s.list_refs().values()) == {digest}
