"""``smartconnector check``: crash-test a connector's own functions.

The engine makes sure nothing it records is lost or repeated. What it cannot make safe is
the connector's code: after a crash between a function's return and its recorded success,
``resume`` runs that function again, with the same idempotency key. ``check`` makes that
crash happen, once for every call an install and an uninstall make, on throwaway
embedded sandboxes, and says which functions made something twice or failed when run
again, and what the uninstall left behind.

How the crash is made: each function of the connector is wrapped; after the chosen call
returns, the wrapper raises :class:`~engine.check._calls.SimulatedCrash`, a
``BaseException`` the engine does not record as the function's failure, so it propagates
as a kill would, before the journal records the success and before the PATCH. A new
engine (a new journal connection, a newly loaded connector) then resumes the integration,
once the dead run's lease has expired.

In a connector's own tests, the pytest plugin's ``check_connector`` fixture gives the same
report as ``smartconnector check DIR --json``::

    async def test_is_safe_to_resume(check_connector):
        report = await check_connector("path/to/my_connector")
        assert report["ok"], report
"""

from engine.check._check import check_connector
from engine.check._verdicts import Leak, Report, Verdict

__all__ = ["Leak", "Report", "Verdict", "check_connector"]
