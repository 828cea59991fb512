"""``read_scope``: a SQLite reader does not wait for a writer's lock (the event stream)."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from service.db import make_engine, read_scope, session_scope


def test_a_reader_is_not_held_up_by_a_writer_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with session_scope(url) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    writer = make_engine(url).connect()
    writer.begin()  # BEGIN IMMEDIATE: holds the write lock until it ends
    writer.exec_driver_sql("INSERT INTO t VALUES (2)")
    try:
        started = time.monotonic()
        with read_scope(url) as session:
            # the committed row only: the writer's is not visible, and nothing waited
            assert session.scalar(text("SELECT count(*) FROM t")) == 1
        assert time.monotonic() - started < 5, "the reader waited for the write lock"
    finally:
        writer.rollback()
        writer.close()


def test_a_read_scope_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with session_scope(url) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    with read_scope(url) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
    with session_scope(url) as session:
        assert session.scalar(text("SELECT count(*) FROM t")) == 0
