"""Opening the stores a run uses: the metadata database and the blob store, from settings."""

from __future__ import annotations

from typing import NamedTuple

from matinee.config import Settings, load_settings
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import open_blob_store
from matinee.core.storage.metadata import MetadataStore


class Store(NamedTuple):
    """Everything a run reads and writes: settings, metadata, artifacts."""

    settings: Settings
    metadata: MetadataStore
    artifacts: ArtifactStore


_open: dict[tuple[str, str], Store] = {}


def open_store(settings: Settings | None = None) -> Store:
    """The store for ``settings`` (default: :func:`~matinee.config.load_settings`), opened once per process."""
    settings = settings or load_settings()
    key = (settings.tracking_uri or settings.metadata_url, settings.blob_url)
    store = _open.get(key)
    if store is None or store.settings != settings:
        if settings.tracking_uri:
            from matinee.core.storage.remote import open_remote

            metadata, blobs = open_remote(settings)
            store = Store(settings, metadata, ArtifactStore(blobs))  # type: ignore[arg-type]
        else:
            store = Store(
                settings,
                MetadataStore.open(settings.metadata_url),
                ArtifactStore(open_blob_store(settings.blob_url)),
            )
        _open[key] = store
    return store


def close_stores() -> None:
    """Close every store this process opened (tests switch homes between cases)."""
    for store in _open.values():
        store.metadata.close()
    _open.clear()
