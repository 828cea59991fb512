"""Request-scoped dependencies.

The request's session commits once, after the handler returns; only then are the
trial messages buffered during the request published (enqueue after commit). On an
exception the session rolls back and the buffer is dropped, so a worker never sees a
job whose row does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from service.db import session_factory
from service.dispatch import DispatchBuffer


def get_session() -> Iterator[Session]:
    session = session_factory()()
    buffer = DispatchBuffer.for_session(session)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        buffer.reset()
        raise
    else:
        buffer.flush()
    finally:
        session.close()


# scope="function": the commit and the publish above finish before the response is sent.
# FastAPI's default ("request") runs this exit code after the response, so a client could
# hold a 202 for a job that is not committed yet, or whose trials are not yet queued.
session_dependency = Depends(get_session, scope="function")
SessionDep = Annotated[Session, session_dependency]
