"""Uploaded files parsed as data, never as code (RELIABILITY.md U1-U4, rule 4).

* The format comes from the file name's suffix: ``.npz``, ``.csv`` or ``.parquet``.
  Anything else, the pickle-based ``.pt``/``.pth``/``.pkl`` first of all, is a 415
  before a byte is interpreted; nothing here imports torch or calls pickle.
* An ``.npz`` is a zip of ``.npy`` members. Each member's declared size and
  compression ratio are checked from the zip directory *before* decompressing (a zip
  bomb is refused from its metadata), each member is read with a bounded read (a
  directory that lies about a size is caught), and each ``.npy`` header is read on its
  own, with numpy's 10 KB header limit, so object and non-numeric dtypes are refused
  before the array data is touched. Only then does ``read_array(allow_pickle=False)``
  read the numbers.
* ``.csv`` and ``.parquet`` go through pyarrow into a table; the target column is
  named by the uploader, every other column must be numeric and complete.

Every refusal is an ``UploadRejected`` carrying the HTTP status and a reason that
says what to fix.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

FORMATS: Mapping[str, str] = {".npz": "npz", ".csv": "csv", ".parquet": "parquet"}
NPY_HEADER_LIMIT = 10_000  # numpy's own max_header_size default: bigger headers are refused
NPZ_ARRAYS = ("X", "y", "X_val", "y_val")
MIN_EXAMPLES = 10
_RATIO_FLOOR = 1 << 20  # members under 1 MiB cannot bomb; all-zero labels compress ~1000:1


class UploadRejected(Exception):
    """An upload refused with ``status`` (413, 415 or 422); ``field`` is the form field."""

    def __init__(self, reason: str, *, status: int = 422, field: str = "file") -> None:
        super().__init__(reason)
        self.reason, self.status, self.field = reason, status, field


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_unpacked_bytes: int
    max_ratio: float
    max_rows: int
    max_columns: int
    max_classes: int

    @classmethod
    def from_settings(cls, settings: Any) -> UploadLimits:
        return cls(
            max_bytes=settings.MAX_UPLOAD_BYTES,
            max_unpacked_bytes=settings.MAX_UPLOAD_UNPACKED_BYTES,
            max_ratio=settings.MAX_UPLOAD_COMPRESSION_RATIO,
            max_rows=settings.MAX_UPLOAD_ROWS,
            max_columns=settings.MAX_UPLOAD_COLUMNS,
            max_classes=settings.MAX_UPLOAD_CLASSES,
        )


@dataclass(frozen=True)
class ParsedDataset:
    """Canonical arrays: ``X`` is ``(N, *example_shape)`` float32, ``y`` labels or targets.

    Classification labels are re-encoded as ``0..K-1`` (``classes`` keeps the original
    values, as strings); regression targets are float32.
    """

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    task_type: str
    classes: list[str] | None

    def arrays(self) -> dict[str, np.ndarray]:
        """What is stored: ``X`` flattened to ``(N, n_features)``, validation if given."""
        out = {"X": self.X.reshape(len(self.X), -1), "y": self.y}
        if self.X_val is not None and self.y_val is not None:
            out |= {"X_val": self.X_val.reshape(len(self.X_val), -1), "y_val": self.y_val}
        return out

    def meta(self) -> dict[str, Any]:
        """Meta-features, computed once at upload."""
        shape = self.X.shape[1:]
        n_val = 0 if self.X_val is None else len(self.X_val)
        meta: dict[str, Any] = {
            "modality": "tabular" if len(shape) == 1 else "image",
            "task_type": self.task_type,
            "n_examples": len(self.X) + n_val,
            "n_train": len(self.X),
            "n_val": n_val,
            "has_validation": self.X_val is not None,
            "n_features": int(np.prod(shape)),
            "input_shape": None if len(shape) == 1 else _image_shape(shape),
            "n_classes": None if self.classes is None else len(self.classes),
            "classes": self.classes,
            "class_balance": None,
        }
        if self.classes is not None:
            labels = self.y if self.y_val is None else np.concatenate([self.y, self.y_val])
            counts = np.bincount(labels, minlength=len(self.classes)) / len(labels)
            meta["class_balance"] = [round(float(c), 4) for c in counts]
        return meta


def _image_shape(shape: tuple[int, ...]) -> list[int]:
    return [1, *shape] if len(shape) == 2 else list(shape)


def detect_format(filename: str) -> str:
    """``npz``, ``csv`` or ``parquet`` from the suffix; anything else is a 415."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix not in FORMATS:
        raise UploadRejected(
            f"unsupported file type {suffix or filename!r}: upload .npz, .csv or .parquet "
            "(pickle-based files such as .pt, .pth and .pkl are never loaded)",
            status=415,
        )
    return FORMATS[suffix]


def parse(
    data: bytes, fmt: str, *, target: str | None, task_type: str | None, limits: UploadLimits
) -> ParsedDataset:
    """Parse and validate one upload; raises ``UploadRejected`` with the reason."""
    if len(data) > limits.max_bytes:
        raise UploadRejected(f"file is over the {limits.max_bytes} byte limit", status=413)
    if fmt == "npz":
        arrays = read_npz(data, limits)
        X, y, X_val, y_val = _npz_parts(arrays)
    else:
        if not target:
            raise UploadRejected(
                f"a .{fmt} upload needs `target`, the name of its label column", field="target"
            )
        table = _read_csv(data) if fmt == "csv" else _read_parquet(data, limits)
        X, y = _table_arrays(table, target, limits)
        X_val = y_val = None
    return _assemble(X, y, X_val, y_val, task_type, limits)


# -- npz ------------------------------------------------------------------------------
def read_npz(data: bytes, limits: UploadLimits) -> dict[str, np.ndarray]:
    """Every member of the archive, checked from the zip directory before decompressing."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise UploadRejected("not a valid .npz file (it is not a zip archive)") from None
    with archive:
        infos = archive.infolist()
        _check_members(infos, limits)
        return {info.filename[: -len(".npy")]: _read_member(archive, info) for info in infos}


def _check_members(infos: list[zipfile.ZipInfo], limits: UploadLimits) -> None:
    names = [info.filename for info in infos]
    unknown = [n for n in names if not n.endswith(".npy") or n[:-4] not in NPZ_ARRAYS]
    if unknown or len(set(names)) != len(names):
        raise UploadRejected(
            f"unexpected members {unknown or names}: an .npz holds the arrays X and y, "
            "and optionally X_val and y_val"
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_unpacked_bytes:
        raise UploadRejected(
            f"the arrays would unpack to {total} bytes, over the limit of "
            f"{limits.max_unpacked_bytes}",
            status=413,
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > limits.max_ratio:
            raise UploadRejected(
                f"member {info.filename!r} would expand {ratio:.0f}-fold (limit "
                f"{limits.max_ratio:.0f}): refused as a possible zip bomb",
                status=413,
            )
        if info.flag_bits & 0x1:
            raise UploadRejected(f"member {info.filename!r} is encrypted")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    name = info.filename[:-4]
    try:
        with archive.open(info) as member:
            raw = member.read(info.file_size + 1)  # bounded: never more than declared
    except (zipfile.BadZipFile, OSError, NotImplementedError) as exc:
        raise UploadRejected(f"array {name!r} cannot be read from the archive: {exc}") from None
    if len(raw) != info.file_size:
        raise UploadRejected(f"array {name!r} is not the size the archive declares")
    _check_npy_header(name, io.BytesIO(raw))
    try:
        array = np.lib.format.read_array(
            io.BytesIO(raw), allow_pickle=False, max_header_size=NPY_HEADER_LIMIT
        )
    except ValueError as exc:
        raise UploadRejected(f"array {name!r} is not a valid .npy array: {exc}") from None
    return np.asarray(array)


def _check_npy_header(name: str, buf: io.BytesIO) -> None:
    """Refuse big headers and non-numeric dtypes from the header alone (before the data)."""
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(buf, NPY_HEADER_LIMIT)
        elif version == (2, 0):
            _, _, dtype = np.lib.format.read_array_header_2_0(buf, NPY_HEADER_LIMIT)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as exc:
        raise UploadRejected(f"array {name!r} has an invalid .npy header: {exc}") from None
    if dtype.hasobject:
        raise UploadRejected(f"array {name!r}: object arrays are not allowed (numbers only)")
    if dtype.kind not in "biuf":
        raise UploadRejected(f"array {name!r} has dtype {dtype}: numbers only (bool, int, float)")


def _npz_parts(arrays: dict[str, np.ndarray]) -> tuple[Any, Any, Any, Any]:
    for name in ("X", "y"):
        if name not in arrays:
            raise UploadRejected(f"the .npz has no array {name!r} (it needs X and y)")
    if ("X_val" in arrays) != ("y_val" in arrays):
        raise UploadRejected("give both X_val and y_val, or neither")
    return arrays["X"], arrays["y"], arrays.get("X_val"), arrays.get("y_val")


# -- tables ---------------------------------------------------------------------------
def _read_csv(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(io.BytesIO(data))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UploadRejected(f"the CSV cannot be parsed: {exc}") from None


def _read_parquet(data: bytes, limits: UploadLimits) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        # sizes from the footer, before any page is decompressed (a Parquet bomb is a
        # small file of highly compressible pages, like a zip bomb)
        footer = parquet.metadata
        _check_table_size(footer.num_rows, footer.num_columns, limits)
        unpacked = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
        if unpacked > limits.max_unpacked_bytes:
            raise UploadRejected(
                f"the table would unpack to {unpacked} bytes, over the limit of "
                f"{limits.max_unpacked_bytes}",
                status=413,
            )
        return parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise UploadRejected(f"the Parquet file cannot be read: {exc}") from None


def _check_table_size(rows: int, columns: int, limits: UploadLimits) -> None:
    if rows > limits.max_rows:
        raise UploadRejected(f"{rows} rows, over the limit of {limits.max_rows}", status=413)
    if columns > limits.max_columns + 1:
        raise UploadRejected(
            f"{columns} columns, over the limit of {limits.max_columns}", status=413
        )


def _table_arrays(table: Any, target: str, limits: UploadLimits) -> tuple[Any, Any]:
    import pyarrow as pa

    _check_table_size(table.num_rows, table.num_columns, limits)
    if target not in table.column_names:
        raise UploadRejected(
            f"target column {target!r} not found; the columns are {table.column_names}",
            field="target",
        )
    features = [c for c in table.column_names if c != target]
    if not features:
        raise UploadRejected("there is no feature column besides the target")
    columns = []
    for name in features:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type)):  # fmt: skip
            raise UploadRejected(f"feature column {name!r} is not numeric ({column.type})")
        if column.null_count:
            raise UploadRejected(
                f"feature column {name!r} has {column.null_count} missing values (empty, NA or NaN)"
            )
        columns.append(column.to_numpy(zero_copy_only=False).astype(np.float32))
    labels = table.column(target)
    if labels.null_count:
        raise UploadRejected(
            f"target column {target!r} has {labels.null_count} missing values (empty, NA or NaN)",
            field="target",
        )
    return np.column_stack(columns), labels.to_numpy(zero_copy_only=False)


# -- shared checks --------------------------------------------------------------------
def _assemble(
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    task_type: str | None,
    limits: UploadLimits,
) -> ParsedDataset:
    X = _features(X, "X", limits)
    _check_pair(X, y, "X", "y")
    if X_val is not None and y_val is not None:
        X_val = _features(X_val, "X_val", limits)
        _check_pair(X_val, y_val, "X_val", "y_val")
        if X_val.shape[1:] != X.shape[1:]:
            raise UploadRejected(
                f"shape mismatch: X_val examples are {X_val.shape[1:]}, X's are {X.shape[1:]}"
            )
    rows = len(X) + (0 if X_val is None else len(X_val))
    if rows > limits.max_rows:
        raise UploadRejected(f"{rows} rows, over the limit of {limits.max_rows}", status=413)
    if len(X) < MIN_EXAMPLES:
        raise UploadRejected(f"{len(X)} training examples: at least {MIN_EXAMPLES} are needed")
    y_all = y if y_val is None else np.concatenate([y, y_val])
    task, encoded, classes = _targets(y_all, task_type, limits)
    y_out, y_val_out = encoded[: len(y)], (None if y_val is None else encoded[len(y) :])
    return ParsedDataset(X, y_out, X_val, y_val_out, task, classes)


def _features(X: np.ndarray, name: str, limits: UploadLimits) -> np.ndarray:
    if X.ndim not in (2, 3, 4):
        raise UploadRejected(
            f"{name} has shape {X.shape}: expected (n, features), (n, H, W) or (n, C, H, W)"
        )
    n_features = int(np.prod(X.shape[1:]))
    if n_features > limits.max_columns:
        raise UploadRejected(
            f"{n_features} features, over the limit of {limits.max_columns}", status=413
        )
    X = X.astype(np.float32)
    bad = int(np.size(X) - np.count_nonzero(np.isfinite(X)))
    if bad:
        raise UploadRejected(f"{name} contains {bad} NaN or infinite values")
    return X


def _check_pair(X: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if y.ndim != 1 or len(y) != len(X):
        raise UploadRejected(
            f"shape mismatch: {x_name} has {len(X)} examples but {y_name} has shape {y.shape} "
            f"(expected ({len(X)},))"
        )


def _targets(
    y: np.ndarray, task_type: str | None, limits: UploadLimits
) -> tuple[str, np.ndarray, list[str] | None]:
    """The task (given, or inferred: integer/bool/string labels classify), encoded targets."""
    numeric = y.dtype.kind in "biuf"
    if task_type is None:
        task_type = "regression" if y.dtype.kind == "f" else "classification"
    if task_type == "regression":
        if not numeric:
            raise UploadRejected(f"a regression target must be numeric, not {y.dtype}")
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise UploadRejected("the target contains NaN or infinite values")
        return task_type, y, None
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise UploadRejected(
            "classification labels must be integers or strings; these are non-integer "
            "numbers (send task_type=regression to fit them)"
        )
    classes, encoded = np.unique(y, return_inverse=True)
    if not 2 <= len(classes) <= limits.max_classes:
        raise UploadRejected(
            f"{len(classes)} classes: classification needs between 2 and {limits.max_classes}"
        )
    labels = [str(c.item() if hasattr(c, "item") else c) for c in classes]
    return task_type, encoded.astype(np.int64).reshape(-1), labels
