"""A rollout's updates on a worker, a page at a time: the activities the rollout workflow
(:mod:`._rollout`) hands its integrations to.

Each integration's update used to be a child workflow of its own, some 25 history events,
each one of Temporal's own writes. An ``update_page`` activity updates up to
:data:`PAGE_UPDATES` integrations with the local engine (:meth:`Engine.update`: the same
2 + k requests an update), ``concurrency`` at once, spaced to keep within the share of the
workers' request rate the rollout gives it (its pages split that rate between them).

What a page has done (updated, failed) rides on its heartbeats. A try that takes over from
a lost worker skips it and reads the rest afresh: the update the lost worker was in goes on
from its document under the lease the rollout holds (:func:`rollout_owner`), its function
called again with the same idempotency key; one the earlier try finished is seen at the
version and counted as updated, never run again.

Cancelled by the workflow (``rollouts pause`` or ``abort``) or by the worker shutting down,
a page starts no more updates, lets those in flight finish and hands back what it did not
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from temporalio import activity

from engine.client import ApiClient, Document
from engine.drivers.executors import LocalExecutor
from engine.drivers.runner import Engine
from engine.errors import BadInput, SmartConnectorError
from engine.fleet.control import health_problem
from engine.run.journal import Journal
from engine.run.views import read_view
from engine.run.writer import Owner
from engine.temporal._rollout_data import LookPage, PageDone, UpdatePage
from installers import Connector, find_installed
from installers.remote import ExtensionServer

log = structlog.get_logger("smartconnector.worker")
#: Seconds between two heartbeats of a page (the worker sends at most one a second): how
#: soon it hears that the rollout was paused or aborted.
HEARTBEAT_EVERY = 0.5
#: Requests an update makes from a listed document (the PATCH that takes the lease and sets
#: the flag, the one that writes the version), and one more when it reads the document.
UPDATE_REQUESTS = 2


def rollout_owner(rollout: str, integration_id: str) -> Owner:
    """Who holds the lease of an update a rollout makes: the same for every try of every
    page of the rollout, and no one else."""
    digest = hashlib.sha256(f"{rollout}\x1f{integration_id}".encode()).hexdigest()[:16]
    return Owner(digest, "temporal", 0)


class RolloutUpdates(LocalExecutor):
    """Runs a rollout's updates in this worker, each under the lease the rollout holds on
    its integration."""

    def __init__(self, rollout: str) -> None:
        self.rollout = rollout

    def owner(self, integration_id: str | None) -> Owner:
        assert integration_id is not None, "a rollout updates integrations that exist"
        return rollout_owner(self.rollout, integration_id)


class Pace:
    """Spaces what it lets start so that their requests keep within ``per_second``: each
    start takes the time its requests are worth, the last one's included (:meth:`used`).
    ``delay``: seconds before the first."""

    def __init__(self, per_second: float, delay: float = 0.0) -> None:
        self.gap = 1 / per_second
        self.next = time.monotonic() + delay

    async def __call__(self, requests: int) -> None:
        now = time.monotonic()
        at = max(now, self.next)
        self.next = at + requests * self.gap
        if at > now:
            await asyncio.sleep(at - now)

    async def used(self) -> None:
        """Until the time the requests started are worth has passed: a page that ends
        sooner would hand its successor a share it has not finished using."""
        await asyncio.sleep(max(0.0, self.next - time.monotonic()))


class PageActivities:
    """The page activities, bound to a worker's API client, the connectors it can run, and
    the request rate the workers of its task queue keep to together."""

    def __init__(
        self,
        api: ApiClient,
        connectors: dict[str, Connector],
        extension: ExtensionServer | None,
        requests_per_second: float,
    ) -> None:
        self.api = api
        self.connectors = connectors
        self.extension = extension
        self.rate = requests_per_second
        self.journal = Journal(Path(":memory:"))  # Temporal's history is the journal here

    def _connector(self, page: UpdatePage) -> Connector:
        found = self.connectors.get(page.connector_id) or find_installed(page.connector_id)
        if found is None:
            raise BadInput(
                f"this worker has no connector {page.connector_id}: start it with --connector DIR",
                field="--connector",
            )
        if found.manifest.version != page.version:
            raise BadInput(
                f"this worker has version {found.manifest.version} of connector"
                f" {page.connector_id}, the rollout is to {page.version}: start it with"
                " --connector DIR of that version",
                field="--connector",
            )
        return found

    @activity.defn(name="smartconnector.update_page")
    async def update_page(self, page: UpdatePage) -> PageDone:
        """Update the page's integrations (see the module's docstring)."""
        info = activity.info()
        done = _progress(info.heartbeat_details)
        finished = done.finished()
        targets: list[Document | str] = [d for d in page.docs if str(d["_id"]) not in finished]
        targets += [i for i in page.ids if i not in finished]
        if info.attempt > 1:  # an earlier try may have changed any of them: read each afresh
            targets = [_id(t) for t in targets]
        try:
            connector = self._connector(page)
        except SmartConnectorError as exc:
            done.failed += [{"_id": _id(t), "reason": str(exc)} for t in targets]
            return done
        engine = Engine(
            self.api,
            self.journal,
            lease_ttl=page.lease_ttl,
            extension=self.extension,
            executor=RolloutUpdates(page.rollout),
        )
        beat = asyncio.create_task(_keep_beating(done))
        try:
            started = await self._update(engine, connector, page, targets, done)
        finally:
            beat.cancel()
        left = targets[started:]
        done.left_docs = [t for t in left if not isinstance(t, str)]
        done.left_ids = [t for t in left if isinstance(t, str)]
        log.info(
            "page done",
            rollout=page.rollout,
            updated=len(done.updated),
            failed=len(done.failed),
            left=len(left),
        )
        return done

    async def _update(
        self,
        engine: Engine,
        connector: Connector,
        page: UpdatePage,
        targets: list[Document | str],
        done: PageDone,
    ) -> int:
        """Update ``targets`` in order, ``page.concurrency`` at once, paced; how many it
        started (all, unless it was cancelled: those in flight then finish first)."""
        gate = asyncio.Semaphore(page.concurrency)
        per_second = self.rate * page.share
        pace = Pace(per_second, page.offset * UPDATE_REQUESTS / per_second)
        running: set[asyncio.Task[None]] = set()
        started = 0

        async def one(target: Document | str) -> None:
            try:
                await _update_one(engine, connector, target, done)
            finally:
                gate.release()
                activity.heartbeat(_snapshot(done))

        try:
            for target in targets:
                await gate.acquire()
                await pace(UPDATE_REQUESTS + isinstance(target, str))
                running.add(asyncio.create_task(one(target)))
                started += 1
            await _finish(running)
            await pace.used()
        except asyncio.CancelledError:
            if not _stop_asked():
                for task in running:  # timed out: another try has taken the page over
                    task.cancel()
                raise
            _uncancel()
            await _finish(running)
        return started

    @activity.defn(name="smartconnector.look_page")
    async def look_page(self, page: LookPage) -> list[str]:
        """What is wrong with each integration after a bake ("" when nothing is)."""
        gate = asyncio.Semaphore(page.concurrency)
        pace = Pace(self.rate * page.share)

        async def look(integration_id: str) -> str:
            async with gate:
                await pace(1)
                try:
                    doc = await read_view(self.api, integration_id)
                except SmartConnectorError as exc:
                    return f"after the bake: {exc}"
                return health_problem(doc, page.version) or ""

        return list(await asyncio.gather(*(look(i) for i in page.ids)))


async def _update_one(
    engine: Engine, connector: Connector, target: Document | str, done: PageDone
) -> None:
    """One integration (its listed document, or its id: read it) to the connector's version;
    one found there already was updated by an earlier try of the page."""
    integration_id = _id(target)
    doc = None if isinstance(target, str) else target
    try:
        await engine.update(integration_id, connector, doc=doc)
    except SmartConnectorError as exc:
        done.failed.append({"_id": integration_id, "reason": str(exc)})
    except Exception as exc:  # a fault of the engine's: this one fails, saying so, not the page
        log.exception("update failed", integration_id=integration_id)
        done.failed.append({"_id": integration_id, "reason": f"{type(exc).__name__}: {exc}"})
    else:
        done.updated.append(integration_id)


def _stop_asked() -> bool:
    """Whether this activity is cancelled because it was asked to stop or its worker shuts
    down (the updates in flight then finish), rather than timed out."""
    cause = activity.cancellation_details()
    return cause is not None and (cause.cancel_requested or cause.worker_shutdown)


def _uncancel() -> None:
    """Go on in the current task after its cancellation was caught: waiting for what is in
    flight must not be cancelled in turn."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


async def _finish(running: set[asyncio.Task[None]]) -> None:
    """Wait for the updates in flight (never cancelling them)."""
    pending = {t for t in running if not t.done()}
    if pending:
        await asyncio.wait(pending)


async def _keep_beating(done: PageDone) -> None:
    """Tell Temporal the page is alive, with what it has done so far."""
    while True:
        activity.heartbeat(_snapshot(done))
        await asyncio.sleep(HEARTBEAT_EVERY)


def _snapshot(done: PageDone) -> PageDone:
    return PageDone(list(done.updated), list(done.failed))


def _progress(details: Sequence[Any]) -> PageDone:
    """What an earlier try of the page did, from its last heartbeat (nothing on a first)."""
    last = details[-1] if details else None
    if not isinstance(last, dict):
        return PageDone()
    with contextlib.suppress(TypeError, KeyError):
        return PageDone(
            [str(i) for i in last["updated"]],
            [{"_id": str(f["_id"]), "reason": str(f["reason"])} for f in last["failed"]],
        )
    return PageDone()


def _id(target: Document | str) -> str:
    return target if isinstance(target, str) else str(target["_id"])
