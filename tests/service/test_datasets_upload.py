"""Uploaded datasets: each format round-trips, each bad file is refused with its reason.

RELIABILITY.md U1-U4: object arrays never reach pickle, big ``.npy`` headers and zip
bombs are refused before decompressing, pickle-based files are a 415 without torch.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tests.factories import make_key

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)


def npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def csv_bytes(rows: list[list[object]], header: list[str]) -> bytes:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def table_rows() -> list[list[object]]:
    return [[*map(float, x), "yes" if label else "no"] for x, label in zip(X, Y, strict=True)]


def parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({f"f{i}": X[:, i] for i in range(4)} | {"label": Y})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def upload(
    client: TestClient, auth: dict[str, str], filename: str, data: bytes, **form: str
) -> Any:
    files = {"file": (filename, data, "application/octet-stream")}
    return client.post("/v1/datasets", headers=auth, files=files, data=form)


def reason(response: Any) -> str:
    return str(response.json()["detail"][0]["msg"])


def loc(response: Any) -> list[Any]:
    return list(response.json()["detail"][0]["loc"])


def blobs(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "datasets").glob("*.npz"))


# -- accepted formats -----------------------------------------------------------------
FORMATS = {
    "npz": ("d.npz", lambda: npz_bytes(X=X, y=Y), {}),
    "csv": ("d.csv", lambda: csv_bytes(table_rows(), ["a", "b", "c", "d", "label"]),
            {"target": "label"}),
    "parquet": ("d.parquet", parquet_bytes, {"target": "label", "name": "my table"}),
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip(client: TestClient, auth: dict[str, str], data_dir: Path, fmt: str) -> None:
    filename, make, form = FORMATS[fmt]
    created = upload(client, auth, filename, make(), **form)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["format"] == fmt and body["task_type"] == "classification"
    assert (body["n_examples"], body["n_features"], body["n_classes"]) == (60, 4, 2)
    assert body["modality"] == "tabular" and body["metrics"][0] == "val_accuracy"
    balance = np.bincount(Y) / len(Y)
    assert body["meta"]["class_balance"] == pytest.approx(balance.tolist(), abs=1e-4)
    assert body["name"] == form.get("name", "d")
    assert blobs(data_dir) == [data_dir / "datasets" / f"{body['sha256']}.npz"]

    listed = client.get("/v1/datasets", headers=auth).json()
    uploads = [d for d in listed if d["source"] == "upload"]
    assert [d["name"] for d in uploads] == [body["id"]]
    assert {"digits", "python_docs"} <= {d["name"] for d in listed if d["source"] == "builtin"}
    assert client.get(f"/v1/datasets/{body['id']}", headers=auth).json() == body

    assert client.delete(f"/v1/datasets/{body['id']}", headers=auth).status_code == 204
    assert client.get(f"/v1/datasets/{body['id']}", headers=auth).status_code == 404
    assert blobs(data_dir) == []


def test_other_tenants_upload_is_404(client: TestClient, auth: dict[str, str]) -> None:
    dataset_id = upload(client, auth, "d.npz", npz_bytes(X=X, y=Y)).json()["id"]
    other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
    assert client.get(f"/v1/datasets/{dataset_id}", headers=other).status_code == 404
    assert client.delete(f"/v1/datasets/{dataset_id}", headers=other).status_code == 404
    assert all(d["source"] == "builtin" for d in client.get("/v1/datasets", headers=other).json())
    assert client.get(f"/v1/datasets/{dataset_id}", headers=auth).status_code == 200


def test_same_content_is_stored_once(
    client: TestClient, auth: dict[str, str], data_dir: Path
) -> None:
    first = upload(client, auth, "a.npz", npz_bytes(X=X, y=Y)).json()
    second = upload(client, auth, "b.npz", npz_bytes(X=X, y=Y)).json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    client.delete(f"/v1/datasets/{first['id']}", headers=auth)
    assert len(blobs(data_dir)) == 1  # still used by the second upload
    client.delete(f"/v1/datasets/{second['id']}", headers=auth)
    assert blobs(data_dir) == []


def test_regression_images_and_validation_split(client: TestClient, auth: dict[str, str]) -> None:
    target = X[:, 1] * 2.0
    body = upload(client, auth, "r.npz", npz_bytes(X=X[:50], y=target[:50], X_val=X[50:],
                                                   y_val=target[50:])).json()  # fmt: skip
    assert body["task_type"] == "regression" and body["n_classes"] is None
    assert body["meta"]["n_val"] == 10 and body["metrics"][0] == "val_rmse"
    images = RNG.normal(size=(30, 6, 6)).astype(np.float32)
    body = upload(client, auth, "i.npz", npz_bytes(X=images, y=np.arange(30) % 3)).json()
    assert body["modality"] == "image" and body["meta"]["input_shape"] == [1, 6, 6]
    assert body["n_features"] == 36


# -- refusals -------------------------------------------------------------------------
def object_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=np.array([{"a": 1}] * 20, dtype=object), y=np.zeros(20))
    return buf.getvalue()


def test_object_array_never_reaches_pickle(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = object_npz()  # built with pickle, before pickle is booby-trapped
    calls: list[str] = []

    def trap(name: str) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"pickle.{name} was called")

        return called

    class Unpickler:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            trap("Unpickler")()

    monkeypatch.setattr(pickle, "Unpickler", Unpickler)
    monkeypatch.setattr(pickle, "loads", trap("loads"))
    monkeypatch.setattr(pickle, "load", trap("load"))
    response = upload(client, auth, "evil.npz", data)
    assert response.status_code == 422
    assert "object arrays are not allowed" in reason(response)
    assert calls == []


def big_header_npy() -> bytes:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (20, 4), }"
    header = header + " " * (20_000 - len(header)) + "\n"
    body = np.zeros((20, 4), dtype="<f4").tobytes()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def zip_of(**members: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_big_npy_header_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    response = upload(client, auth, "h.npz", zip_of(X=big_header_npy(), y=npy(np.zeros(20))))
    assert response.status_code == 422
    assert "header" in reason(response) and "X" in reason(response)


def test_zip_bomb_is_refused_before_decompressing(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = zip_of(X=b"\0" * (8 << 20), y=npy(np.zeros(20)))  # 8 MiB of zeros in ~8 KB
    assert len(bomb) < 100_000

    def no_open(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a member was decompressed")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_open)
    response = upload(client, auth, "bomb.npz", bomb)
    assert response.status_code == 413
    assert "zip bomb" in reason(response)


@pytest.mark.parametrize("fmt", ["npz", "parquet"])
def test_unpacked_size_limit(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    from service.config import get_settings

    filename, make, form = FORMATS[fmt]
    monkeypatch.setenv("OPTSERVE_MAX_UPLOAD_UNPACKED_BYTES", "1000")
    get_settings.cache_clear()
    response = upload(client, auth, filename, make(), **form)
    get_settings.cache_clear()
    assert response.status_code == 413 and "unpack" in reason(response)


@pytest.mark.parametrize(("setting", "message"), [("ROWS", "60 rows"), ("COLUMNS", "4 features")])
def test_row_and_column_limits(
    client: TestClient,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    message: str,
) -> None:
    from service.config import get_settings

    monkeypatch.setenv(f"OPTSERVE_MAX_UPLOAD_{setting}", "3")
    get_settings.cache_clear()
    response = upload(client, auth, "d.npz", npz_bytes(X=X, y=Y))
    get_settings.cache_clear()
    assert response.status_code == 413 and message in reason(response)


@pytest.mark.parametrize("filename", ["model.pt", "model.pth", "data.pkl", "x.npy", "noext"])
def test_pickle_formats_are_unsupported(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, filename: str
) -> None:
    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_load)
    response = upload(client, auth, filename, pickle.dumps({"weights": [1, 2]}))
    assert response.status_code == 415
    assert "unsupported file type" in reason(response) and loc(response) == ["body", "file"]


def test_upload_path_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from service.datasets import parsing, service\n"
        "try:\n"
        "    parsing.detect_format('model.pt')\n"
        "except parsing.UploadRejected as exc:\n"
        "    assert exc.status == 415\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


HEADER = ["a", "b", "c", "d", "label"]
CSV_CASES = {
    "missing target": (table_rows(), {"target": "species"}, "target column 'species' not found",
                       "target"),
    "no target given": (table_rows(), {}, "needs `target`", "target"),
    "non-numeric feature": ([["x", *r[1:]] for r in table_rows()], {"target": "label"},
                            "feature column 'a' is not numeric", "file"),
    "nan": ([["nan", *r[1:]] if i == 3 else r for i, r in enumerate(table_rows())],
            {"target": "label"}, "NaN", "file"),
    "missing value": ([["", *r[1:]] if i == 3 else r for i, r in enumerate(table_rows())],
                      {"target": "label"}, "missing values (empty", "file"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_csv_refusals(client: TestClient, auth: dict[str, str], case: str) -> None:
    rows, form, message, field = CSV_CASES[case]
    response = upload(client, auth, "t.csv", csv_bytes(rows, HEADER), **form)
    assert response.status_code == 422, response.text
    assert message in reason(response) and loc(response) == ["body", field]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": X, "y": Y[:-1]}, "shape mismatch"),
        ({"X": X}, "no array 'y'"),
        ({"X": X, "y": Y, "X_val": X}, "both X_val and y_val"),
        ({"X": X, "y": Y, "X_val": X[:, :3], "y_val": Y}, "shape mismatch"),
        ({"X": np.where(X > 1, np.nan, X), "y": Y}, "NaN"),
        ({"X": X, "y": np.zeros(60, dtype=np.int64)}, "1 classes"),
        ({"X": X, "y": Y, "weights": Y}, "unexpected members"),
        ({"X": X.astype(np.complex64), "y": Y}, "numbers only"),
    ],
)
def test_npz_refusals(client: TestClient, auth: dict[str, str], arrays: Any, message: str) -> None:
    response = upload(client, auth, "d.npz", npz_bytes(**arrays))
    assert response.status_code == 422, response.text
    assert message in reason(response)


def test_not_a_zip(client: TestClient, auth: dict[str, str]) -> None:
    response = upload(client, auth, "d.npz", b"not a zip at all")
    assert response.status_code == 422 and "not a valid .npz" in reason(response)


def test_upload_needs_write_scope(client: TestClient) -> None:
    reader = {"Authorization": f"Bearer {make_key('tenant-r', read_only=True)}"}
    assert upload(client, reader, "d.npz", npz_bytes(X=X, y=Y)).status_code == 403


# -- jobs and workers -----------------------------------------------------------------
def test_resolve_dataset_for_job(client: TestClient, auth: dict[str, str]) -> None:
    from service.auth import AuthSubject
    from service.datasets.service import resolve_dataset_for_job
    from service.db import session_scope
    from service.tenants.service import get_or_create_tenant
    from workers.catalog import CatalogError

    dataset_id = upload(client, auth, "d.npz", npz_bytes(X=X, y=Y)).json()["id"]
    with session_scope() as session:
        owner, other = (
            AuthSubject(get_or_create_tenant(session, t).id, uuid.uuid4(), frozenset())
            for t in ("tenant-a", "tenant-b")
        )
        assert resolve_dataset_for_job(session, owner, "digits").source == "builtin"
        spec = resolve_dataset_for_job(session, owner, dataset_id)
        assert (spec.name, spec.source, spec.n_classes) == (dataset_id, "upload", 2)
        for subject, name in ((other, dataset_id), (owner, str(uuid.uuid4())), (owner, "x")):
            with pytest.raises(CatalogError) as info:
                resolve_dataset_for_job(session, subject, name)
            assert info.value.field is None


def test_worker_trains_on_uploads(client: TestClient, auth: dict[str, str]) -> None:
    from workers.catalog import estimate_parameters
    from workers.training import load_dataset, train
    from workers.training.uploads import upload_spec

    tabular = upload(client, auth, "d.npz", npz_bytes(X=X[:50], y=Y[:50], X_val=X[50:],
                                                      y_val=Y[50:])).json()["id"]  # fmt: skip
    data = load_dataset(tabular, seed=0)
    assert data.X_train.shape == (50, 4) and data.X_val.shape == (10, 4)  # the given split
    images = RNG.normal(size=(40, 1, 6, 6)).astype(np.float32)
    image_id = upload(client, auth, "i.npz", npz_bytes(X=images, y=np.arange(40) % 2)).json()["id"]
    for model, dataset in (("mlp", tabular), ("cnn", image_id), ("mlp", image_id)):
        result = train(
            model=model, model_params={}, dataset=dataset, dataset_params={}, epochs=1,
            batch_size=16, seed=0, on_epoch=lambda point: None,
            make_optimizer=lambda params, total: torch.optim.AdamW(params, lr=1e-2),
        )  # fmt: skip
        assert np.isfinite(result.epochs[0].metrics["val_accuracy"])
        if model == "cnn":  # the service's size check works on an upload's spec too
            assert estimate_parameters(model, {}, upload_spec(dataset), None) == (
                result.n_parameters
            )
    assert load_dataset(image_id, seed=0, input_kind="image").X_train.shape[1:] == (1, 6, 6)
