"""PostgreSQL error codes that adapters turn into domain answers instead of 500s.

Drivers raise them raw (asyncpg, on the purchase path's direct statements) or wrapped
(SQLAlchemy, advanced-alchemy); ``sqlstate_of`` looks through either.
"""

from __future__ import annotations

FOREIGN_KEY_VIOLATION = "23503"
LOCK_NOT_AVAILABLE = "55P03"


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of the first driver error in ``exc``'s chain, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, getattr(seen, "orig", None)):
            code = getattr(candidate, "sqlstate", None)
            if isinstance(code, str):
                return code
        seen = seen.__cause__ or seen.__context__
    return None
