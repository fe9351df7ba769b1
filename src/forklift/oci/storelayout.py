"""Where everything lives under a store's root directory: the one place that names those paths.

``Store`` owns one (``Store.layout``); code that has only the root path (the whole-build memo, which
must not pay for importing the store) makes its own with ``StoreLayout(root)``. Nothing here
touches the filesystem, and importing it costs nothing beyond ``pathlib``.

    blobs/<alg>/<hex>              content, named by its digest
    tmp/                           blobs being written
    refs.json, refs.lock, gc.lock  names -> digests; the locks that serialise writers and prune
    roots/<owner>                  digests another part of forklift keeps alive (the build cache)
    leases/<id>                    digests a running build needs; leases/snapshots/: snapshot leases
    compressed/<c>/<alg>-<hex>     the gzip/zstd form made of an uncompressed layer
    registry/sources/, registry/compressed/   where a blob was pushed or pulled; push compressions
    cache/steps/, positions/, memo/, from/, context-stat/, mounts/   the build cache (execute.cache)
    snapshots/<diff_id>            unpacked layers (execute.snapshots)
    buildinfo/                     build records by manifest digest; buildinfo/layers/: size stats
    exports/, bundles/, runtime.json   rootfs exports, runtime bundles, the probed runtime
"""

from __future__ import annotations

from pathlib import Path

from forklift.records import record


@record
class StoreLayout:
    """The paths of a store rooted at ``root`` (none is created here)."""

    root: Path

    # ---- content and names (oci.store) ----------------------------------------------------------------

    @property
    def blobs(self) -> Path:
        """``blobs/``: one directory per digest algorithm."""
        return self.root / "blobs"

    def blob(self, algorithm: str, hex_digest: str) -> Path:
        """``blobs/<alg>/<hex>``: where a blob lives (it may not exist)."""
        return self.root / "blobs" / algorithm / hex_digest

    @property
    def tmp(self) -> Path:
        """``tmp/``: blobs being written."""
        return self.root / "tmp"

    @property
    def refs(self) -> Path:
        """``refs.json``: reference name -> digest."""
        return self.root / "refs.json"

    @property
    def refs_lock(self) -> Path:
        """``refs.lock``: held while refs.json is rewritten."""
        return self.root / "refs.lock"

    @property
    def gc_lock(self) -> Path:
        """``gc.lock``: puts hold it shared, prune exclusively."""
        return self.root / "gc.lock"

    @property
    def roots(self) -> Path:
        """``roots/``: one file of digests per owner."""
        return self.root / "roots"

    @property
    def leases(self) -> Path:
        """``leases/``: one locked file of digests per running build."""
        return self.root / "leases"

    @property
    def snapshot_leases(self) -> Path:
        """``leases/snapshots/``: snapshots a running build uses."""
        return self.root / "leases" / "snapshots"

    @property
    def compressed(self) -> Path:
        """``compressed/<compression>/``: compressed forms of uncompressed layers."""
        return self.root / "compressed"

    @property
    def registry_sources(self) -> Path:
        """``registry/sources/<alg>-<hex>``: repositories known to hold a blob."""
        return self.root / "registry" / "sources"

    @property
    def registry_compressed(self) -> Path:
        """``registry/compressed/<alg>-<hex>.<compression>``: a push's compressed layer digests."""
        return self.root / "registry" / "compressed"

    # ---- the build cache (execute.cache) and snapshots --------------------------------------------------

    @property
    def cache(self) -> Path:
        """``cache/``: the build cache's root."""
        return self.root / "cache"

    @property
    def cache_steps(self) -> Path:
        """``cache/steps/<key hex>.json``: step results."""
        return self.root / "cache" / "steps"

    @property
    def cache_positions(self) -> Path:
        """``cache/positions/``: inputs last seen at a step position (explains misses)."""
        return self.root / "cache" / "positions"

    @property
    def build_memo(self) -> Path:
        """``cache/memo/<key>.json``: whole-build results."""
        return self.root / "cache" / "memo"

    @property
    def copy_memo(self) -> Path:
        """``cache/from/<hash>.json``: source digests of ``COPY --from=<stage>``."""
        return self.root / "cache" / "from"

    @property
    def context_stat(self) -> Path:
        """``cache/context-stat/``: stat signatures and digests of context files."""
        return self.root / "cache" / "context-stat"

    @property
    def cache_mounts(self) -> Path:
        """``cache/mounts/``: ``RUN --mount=type=cache`` directories."""
        return self.root / "cache" / "mounts"

    @property
    def snapshots(self) -> Path:
        """``snapshots/<diff_id>``: unpacked layers."""
        return self.root / "snapshots"

    # ---- reports and the runtime ------------------------------------------------------------------------

    @property
    def buildinfo(self) -> Path:
        """``buildinfo/<manifest hex>.json``: build records."""
        return self.root / "buildinfo"

    @property
    def layer_stats(self) -> Path:
        """``buildinfo/layers/<alg>-<hex>.json``: measured layer sizes."""
        return self.root / "buildinfo" / "layers"

    @property
    def exports(self) -> Path:
        """``exports/``: scratch space of rootfs exports."""
        return self.root / "exports"

    @property
    def bundles(self) -> Path:
        """``bundles/``: OCI runtime bundles of running steps."""
        return self.root / "bundles"

    @property
    def runtime_record(self) -> Path:
        """``runtime.json``: the OCI runtime found last time."""
        return self.root / "runtime.json"
