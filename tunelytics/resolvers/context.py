"""What every resolver gets: the caller, per-request loaders and the app's services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from tunelytics.config import Settings
from tunelytics.domain.auth import Permission, Principal
from tunelytics.pubsub import Broadcaster
from tunelytics.resolvers.cache import TenantCache
from tunelytics.resolvers.errors import Forbidden, Unauthenticated
from tunelytics.resolvers.loaders import Loaders
from tunelytics.storage import Storage
from tunelytics.tokens import InvalidToken, TokenVerifier

if TYPE_CHECKING:
    from tunelytics.resolvers.ratelimit import RequestLimiter
    from tunelytics.services.alerts import AlertService
    from tunelytics.services.monitoring import MonitoringService
    from tunelytics.services.serving import ModelServer
    from tunelytics.services.training import TrainingService


@dataclass
class Services:
    """Built once at start-up and shared by all requests."""

    settings: Settings
    storage: Storage
    broadcaster: Broadcaster
    verifier: TokenVerifier
    limiter: RequestLimiter | None = None
    training: TrainingService | None = None
    models: ModelServer | None = None
    monitoring: MonitoringService | None = None
    alerting: AlertService | None = None
    # Analytics, churn and popularity results per tenant, until its data changes.
    cache: TenantCache = field(default_factory=TenantCache)


def bearer_token(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return value.strip() if not token else None


@dataclass
class Context:
    services: Services
    request: Request | WebSocket
    response: Response | None = None
    # Set by Strawberry from the WebSocket connection_init payload.
    connection_params: dict[str, Any] | None = None
    _principal: Principal | None = None
    _auth_error: Unauthenticated | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def _credentials(self) -> str | None:
        if self.connection_params is not None:
            params = self.connection_params
            raw = params.get("Authorization") or params.get("authorization") or params.get("token")
            return bearer_token(raw)
        return bearer_token(self.request.headers.get("authorization"))

    @property
    def principal(self) -> Principal:
        """The verified caller; raises UNAUTHENTICATED (once decided, for every field alike)."""
        if self._principal is not None:
            return self._principal
        if self._auth_error is not None:
            raise self._auth_error
        token = self._credentials()
        try:
            if token is None:
                raise InvalidToken("authentication required: send a bearer token")
            self._principal = self.services.verifier.verify(token)
        except InvalidToken as error:
            self._auth_error = Unauthenticated(str(error))
            raise self._auth_error from None
        return self._principal

    def authorize(self, permission: Permission) -> Principal:
        principal = self.principal
        if not principal.can(permission):
            action = permission.value.replace("_", " ")
            raise Forbidden(f"role {', '.join(sorted(principal.roles))} may not {action}")
        return principal

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.storage, self.principal.tenant_id)
        return self._loaders

    def fresh_loaders(self) -> None:
        """A subscription serves many events on one context; each event reads afresh."""
        self._loaders = None
