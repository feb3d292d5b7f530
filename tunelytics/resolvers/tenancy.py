"""The caller's tenant: who they are and whether the tenant exists."""

from __future__ import annotations

from tunelytics.domain.tenancy import Tenant
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import Forbidden


async def require_registered_tenant(ctx: Context) -> Tenant:
    """Writes and subscriptions need a registered tenant, not just a well-signed claim."""
    tenant = await ctx.loaders.tenant.load(ctx.principal.tenant_id)
    if tenant is None:
        raise Forbidden(f"tenant {ctx.principal.tenant_id} is not registered")
    return tenant
