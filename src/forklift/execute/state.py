"""The state of a stage between steps: an image value (config + layers) plus build-time scope.

Images are values: every step returns a new ``StageState``. ``identity`` is what the next step's
cache key builds on: a digest of the filesystem (diff_ids) and the run config, so two states with
the same content have the same identity however they were reached (a re-run step that produced the
same layer leaves everything after it cached).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import field, replace

from forklift.oci.model import ContainerConfig, Descriptor, HistoryEntry, ImageConfig
from forklift.records import record


@record
class StageState:
    """One stage's image so far, and what the Dockerfile has in scope there."""

    config: ImageConfig
    layers: tuple[Descriptor, ...] = ()  # layer blobs in the store, in diff_id order
    args: Mapping[str, str] = field(default_factory=dict)  # ARGs declared in the stage, with values
    cmd_set: bool = False  # CMD given in this stage (an ENTRYPOINT then keeps it)
    base: str = ""  # what the stage started from ("scratch", an image name, a stage name)
    base_created: str | None = None  # the base image's created time (a stage with no step keeps it)
    lazy: Mapping[str, str] = field(
        default_factory=dict
    )  # layer digest -> snapshot kind, blob not yet written

    @property
    def container(self) -> ContainerConfig:
        """The run config (ENV, WORKDIR, USER, CMD, ...)."""
        return self.config.config

    def identity(self) -> str:
        """A digest of the content: diff_ids, platform and run config (not history or times)."""
        doc = {
            "diff_ids": [str(d) for d in self.config.diff_ids],
            "platform": [self.config.os, self.config.architecture, self.config.variant or ""],
            "config": self.config.config.to_json(),
        }
        return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def env(self) -> dict[str, str]:
        """The environment a step sees for expansion and RUN: ARGs, overridden by ENV."""
        out = dict(self.args)
        out.update(self.container.env_map())
        return out

    def with_container(self, container: ContainerConfig) -> StageState:
        """A copy with a new run config."""
        return replace(self, config=replace(self.config, config=container))

    def with_history(self, entry: HistoryEntry) -> StageState:
        """A copy with one more history entry (for a step that adds no layer)."""
        return replace(self, config=replace(self.config, history=(*self.config.history, entry)))

    def with_layer(self, layer: Descriptor, diff_id: str, entry: HistoryEntry) -> StageState:
        """A copy with one more layer and its history entry."""
        from forklift.oci.model import Digest

        config = replace(
            self.config,
            diff_ids=(*self.config.diff_ids, Digest.parse(diff_id)),
            history=(*self.config.history, entry),
        )
        return replace(self, config=config, layers=(*self.layers, layer))
