"""Uploaded datasets on the worker: the spec from the database, arrays from the store.

A job names an upload by its id; the service has already checked that the job's
tenant owns it (``service.datasets.service.resolve_dataset_for_job``), so the worker
looks it up by id alone. The arrays are the canonical ``.npz`` the service wrote after
parsing (numbers only); they are still read with ``allow_pickle=False``, and cached by
content hash because one worker runs many trials on the same data.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

import numpy as np

from service.config import get_settings
from service.db import session_scope
from service.models import UploadedDataset
from service.models.dataset import blob_path
from workers.catalog import CatalogError, DatasetSpec

Arrays = tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]


def looks_like_upload_id(name: str) -> bool:
    """Upload ids are UUIDs; built-in names never are."""
    try:
        uuid.UUID(str(name))
    except ValueError:
        return False
    return True


def upload_spec(dataset_id: str) -> DatasetSpec:
    """The upload's catalogue spec; ``CatalogError`` when it does not exist (any more)."""
    return _row_info(dataset_id)[0]


def load_arrays(dataset_id: str) -> Arrays:
    """``(X, y, (X_val, y_val) or None)`` as stored; ``X`` is ``(N, n_features)``."""
    _, sha = _row_info(dataset_id)
    return _load_blob(blob_path(get_settings().DATA_DIR, sha))


def _row_info(dataset_id: str) -> tuple[DatasetSpec, str]:
    with session_scope() as session:
        row = session.get(UploadedDataset, uuid.UUID(str(dataset_id)))
        if row is None:
            raise CatalogError(f"Unknown dataset {dataset_id!r}: no upload has that id")
        return row.spec(), row.sha256


@functools.lru_cache(maxsize=4)
def _load_blob(path: Path) -> Arrays:
    if not path.exists():
        raise CatalogError(f"the stored arrays of this dataset are missing ({path.name})")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: _frozen(npz[key]) for key in npz.files}
    val = (arrays["X_val"], arrays["y_val"]) if "X_val" in arrays else None
    return arrays["X"], arrays["y"], val


def _frozen(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared by every trial of the process: make them read-only."""
    array.flags.writeable = False
    return array
