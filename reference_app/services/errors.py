"""Domain errors. Each has a stable code and an HTTP status, mapped once to
problem+json in ``api/errors.py``. Services raise these; routes never build errors."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a client can receive; ``code`` is stable, ``message`` explains."""

    code = "error"
    status = 400

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class NotAuthenticated(DomainError):
    """No valid access token (or a revoked one)."""
    code, status = "not_authenticated", 401


class PermissionDenied(DomainError):
    """Authenticated, but this user may not do this to this resource."""
    code, status = "permission_denied", 403


class NotFound(DomainError):
    code, status = "not_found", 404


class InvalidTransition(DomainError):
    """The order's state does not allow the event (or another request changed it first)."""
    code, status = "invalid_transition", 409


class Conflict(DomainError):
    """A uniqueness or idempotency clash (duplicate email, replayed webhook, second rating)."""
    code, status = "conflict", 409


class ValidationFailed(DomainError):
    """Input that parses but breaks a rule; ``field`` names the offending field."""
    code, status = "validation_failed", 422


class DeadlinePassed(DomainError):
    code, status = "deadline_passed", 409


class InsufficientFunds(DomainError):
    code, status = "insufficient_funds", 409


class LockedOut(DomainError):
    """Too many failed logins or 2FA codes; ``retry_after_s`` says when to try again."""
    code, status = "locked_out", 429


class TwoFactorRequired(DomainError):
    code, status = "two_factor_required", 401


class WebhookRejected(DomainError):
    """A courier webhook with a bad signature, a stale timestamp or a replayed id."""
    code, status = "webhook_rejected", 401


class NodeUnavailable(DomainError):
    """The Lightning node could not be reached; nothing was changed."""
    code, status = "node_unavailable", 503


class WebhookReplayed(Conflict):
    """A correctly signed courier event whose id was already processed."""
    code = "webhook_replayed"
