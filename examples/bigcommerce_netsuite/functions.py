"""The BigCommerce - NetSuite connector's installer functions.

Connection steps create their connection (once: a retry or resume finds the one it made by
its idempotency key) and hand its id back through ``stepsToUpdate``. Bundle steps point the
user at the bundle's ``installURL`` and verify it is installed in the NetSuite account.
Uninstallers delete what the installers created.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from engine import NotFound
from installers import Field, Registry, StepContext, UserActionRequired

registry = Registry("bigcommerce-netsuite")

BUNDLES = {
    "Integrator Bundle": (
        "integrator",
        "https://system.netsuite.com/app/bundler/bundledetails.nl?id=20038",
    ),
    "BigCommerce Bundle": (
        "bigcommerce",
        "https://system.netsuite.com/app/bundler/bundledetails.nl?id=157015",
    ),
}


async def _connection_once(ctx: StepContext, doc: dict[str, Any]) -> dict[str, Any]:
    """Create the step's connection unless an earlier try of this step already did."""
    found = await ctx.api.list("connections", sourceKey=ctx.idempotency_key)
    if found:
        return found[0]
    return await ctx.api.create("connections", {**doc, "sourceKey": ctx.idempotency_key})


def _step_update(ctx: StepContext, **fields: Any) -> dict[str, Any]:
    assert ctx.step is not None
    return {"success": True, "stepsToUpdate": [{"name": ctx.step.name, **fields}]}


#: What the NetSuite Connection step asks a person for, when nothing supplies it.
CREDENTIALS = (Field("account", "NetSuite account ID"), Field("token", "Token", secret=True))
#: The test account the embedded sandbox uses unless told to ask (``askForCredentials``).
SANDBOX_ACCOUNT = "TSTDRV000000"


def _credentials(ctx: StepContext) -> tuple[str, str] | None:
    """The person's answers, else $NETSUITE_ACCOUNT/$NETSUITE_TOKEN, else the sandbox's test
    account; ``None`` when the connector's settings say to ask."""
    if ctx.input.get("account"):
        return ctx.input["account"], ctx.input.get("token", "")
    if os.environ.get("NETSUITE_ACCOUNT"):
        return os.environ["NETSUITE_ACCOUNT"], os.environ.get("NETSUITE_TOKEN", "")
    return None if ctx.settings.get("askForCredentials") else (SANDBOX_ACCOUNT, "")


@registry.function("verifyNetSuiteConnection")
async def verify_netsuite_connection(ctx: StepContext) -> dict[str, Any]:
    credentials = _credentials(ctx)
    if credentials is None:
        raise UserActionRequired(
            "Enter the NetSuite account ID and a token for it", fields=CREDENTIALS
        )
    account, token = credentials
    conn = await _connection_once(
        ctx,
        {
            "type": "netsuite",
            "name": "NetSuite",
            "netsuite": {
                "account": account,
                # the token itself goes to NetSuite only; the connection keeps a fingerprint
                "tokenFingerprint": hashlib.sha256(token.encode()).hexdigest()[:12],
                # a sandbox NetSuite account comes with the connector's bundles installed
                "bundlesInstalled": ["integrator", "bigcommerce"],
            },
        },
    )
    ctx.log.info("netsuite connection ready", connection_id=conn["_id"])
    return _step_update(ctx, _connectionId=conn["_id"])


@registry.function("verifyBigCommerceConnection")
async def verify_bigcommerce_connection(ctx: StepContext) -> dict[str, Any]:
    conn = await _connection_once(
        ctx,
        {"type": "http", "name": "BigCommerce", "http": {"baseURI": "https://api.bigcommerce.com"}},
    )
    return _step_update(ctx, _connectionId=conn["_id"])


async def _verify_bundle(ctx: StepContext) -> dict[str, Any]:
    assert ctx.step is not None
    bundle, url = BUNDLES[ctx.step.name]
    netsuite = next(s for s in ctx.integration.install if s.name == "NetSuite Connection")
    if netsuite.connection_id is None:
        raise UserActionRequired("set up the NetSuite connection first")
    conn = await ctx.api.get("connections", netsuite.connection_id)
    if bundle not in conn.get("netsuite", {}).get("bundlesInstalled", []):
        raise UserActionRequired(f"install the {ctx.step.name} in NetSuite", url=url)
    return _step_update(ctx, installURL=url)


@registry.function("verifyIntegratorBundleInstallation")
async def verify_integrator_bundle(ctx: StepContext) -> dict[str, Any]:
    return await _verify_bundle(ctx)


@registry.function("verifyBigCommerceBundleInstallation")
async def verify_bigcommerce_bundle(ctx: StepContext) -> dict[str, Any]:
    return await _verify_bundle(ctx)


async def _delete_connection(ctx: StepContext) -> None:
    assert ctx.step is not None
    if ctx.step.connection_id:
        try:
            await ctx.api.delete("connections", ctx.step.connection_id)
        except NotFound:
            ctx.log.info("connection already gone", connection_id=ctx.step.connection_id)


@registry.function("deleteNetSuiteConnection")
async def delete_netsuite_connection(ctx: StepContext) -> None:
    await _delete_connection(ctx)


@registry.function("deleteBigCommerceConnection")
async def delete_bigcommerce_connection(ctx: StepContext) -> None:
    await _delete_connection(ctx)


@registry.function("uninstallVerifyIntegratorBundle")
def uninstall_integrator_bundle(ctx: StepContext) -> None:
    """Bundles stay in the NetSuite account; removing them is the account owner's call."""
    ctx.log.info("leaving the Integrator bundle installed in NetSuite")


@registry.function("uninstallVerifyBigCommerceBundle")
def uninstall_bigcommerce_bundle(ctx: StepContext) -> None:
    """Bundles stay in the NetSuite account; removing them is the account owner's call."""
    ctx.log.info("leaving the BigCommerce bundle installed in NetSuite")
