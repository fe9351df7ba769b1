"""Registries: Docker references, authentication, the distribution protocol, image pull and push.

Nothing is imported here on purpose: ``reference`` is used all over forklift and must not pull in
httpx. What the rest of forklift calls:

- ``transfer.pull_image(store, reference, *, platform=None, options=None, ...) -> PullResult``
- ``transfer.ensure_image(store, reference, *, platform=None, pull=False, ...) -> Digest`` (FROM lines)
- ``transfer.push_image(store, source, destination=None, *, media_types=None, compression="gzip",
  mount_from=(), ...) -> PushResult``
- ``client.RegistryOptions`` (insecure hosts, retries, workers, chunked uploads, httpx transport)
- ``client.RegistryClient`` for protocol-level work (manifests and blobs of one registry host)
- ``auth`` (docker's credential file and helpers), ``errors`` (RegistryError subclasses)
"""
