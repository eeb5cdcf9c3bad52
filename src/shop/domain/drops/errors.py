"""Refusals of the drops module (each maps to its status through its family)."""

from __future__ import annotations

from datetime import datetime

from shop.domain.errors import Conflict, Forbidden, InvalidInput


class DropNotStarted(Conflict):
    def __init__(self, drop_id: int, starts_at: datetime) -> None:
        super().__init__(
            "the drop has not started yet",
            extra={"drop_id": drop_id, "starts_at": starts_at.isoformat(), "rule": "starts_at"},
        )


class DropEnded(Conflict):
    def __init__(self, drop_id: int, ends_at: datetime | None) -> None:
        super().__init__(
            "the drop has ended",
            extra={
                "drop_id": drop_id,
                "state": "ended",
                "ends_at": None if ends_at is None else ends_at.isoformat(),
                "rule": "ends_at",
            },
        )


class PaymentMethodNotAllowed(InvalidInput):
    def __init__(self, drop_id: int, method: str, allowed: list[str]) -> None:
        super().__init__(
            f"this drop does not accept {method}",
            extra={"field": "payment_method", "drop_id": drop_id, "allowed": allowed},
        )


class AdmissionRequired(Forbidden):
    """A queued drop sells only to buyers the waiting room admitted; ``extra.queue`` says
    where to queue."""

    def __init__(self, drop_id: int, reason: str) -> None:
        super().__init__(
            f"this drop is queued: {reason}",
            extra={
                "drop_id": drop_id,
                "queue": {
                    "join": f"/api/drops/{drop_id}/queue",
                    "header": "Admission-Token",
                    "reason": reason,
                },
            },
        )
