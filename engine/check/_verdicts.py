"""Judging the runs: per call, whether running it again was safe; and what uninstall left."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.check._calls import Call
from engine.check._runs import CleanRun, CrashedRun, Ending
from engine.check._workspace import Resource, Snapshot


@dataclass(frozen=True)
class Verdict:
    """Whether ``call`` is safe to run again (``None``: no run reached it), and why not."""

    call: Call
    rerun_safe: bool | None
    problem: str | None = None
    #: It failed in the clean run already: nothing a rerun did, but nothing after it ran.
    first_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.call.function,
            "step": self.call.step,
            "phase": self.call.phase,
            "rerun_safe": self.rerun_safe,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Leak:
    """A resource the install made that is still there after the uninstall."""

    resource: Resource
    step: str | None

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.resource.resource, "_id": self.resource.id, "step": self.step}


@dataclass(frozen=True)
class Report:
    """What ``check`` found; :meth:`to_json` is the shape ``--json`` prints."""

    connector: str
    version: str
    verdicts: list[Verdict]
    leaks: list[Leak]
    #: Where the clean run stopped for want of answers, if it did.
    waiting: Ending | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return all(v.rerun_safe is True for v in self.verdicts) and not self.leaks

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "functions": [v.to_json() for v in self.verdicts],
            "leaks": [leak.to_json() for leak in self.leaks],
        }


def judge(call: Call, clean: CleanRun, crashed: CrashedRun) -> Verdict:
    """Safe when the resumed run ended as the clean one did, with nothing more than it."""
    first = clean.ending(call.phase)
    if first is not None and first.kind == "failed" and first.call == call:
        return Verdict(call, False, f"fails on its first run: {first.message}", first_run=True)
    ending = crashed.ending
    if call not in clean.returned or not crashed.crashed or ending is None or first is None:
        return Verdict(call, None)
    same_end = (ending.kind, ending.call) == (first.kind, first.call)
    if ending.kind == "failed" and not same_end:
        return Verdict(call, False, f"fails when run again: {ending.message}")
    expected = clean.installed if call.phase == "install" else clean.remaining
    surplus = _surplus(crashed.final, expected)
    if surplus:
        return Verdict(call, False, _describe(surplus, crashed.installed))
    if not same_end:
        said = f": {ending.message}" if ending.message else ""
        return Verdict(call, False, f"when run again, the {call.phase} ends {ending.kind}{said}")
    return Verdict(call, True)


def _surplus(found: Snapshot, expected: Snapshot) -> dict[str, list[Resource]]:
    """Of each kind of resource, the ones ``found`` has beyond ``expected``'s count: those
    not matched by name, latest first made last."""
    surplus: dict[str, list[Resource]] = {}
    for kind in dict.fromkeys(r.resource for r in found.values()):
        have = [r for r in found.values() if r.resource == kind]
        wanted = Counter(r.name for r in expected.values() if r.resource == kind)
        extra = len(have) - sum(wanted.values())
        if extra <= 0:
            continue
        unmatched: list[Resource] = []
        for resource in have:
            if wanted[resource.name] > 0:
                wanted[resource.name] -= 1
            else:
                unmatched.append(resource)
        surplus[kind] = unmatched[-extra:]
    return surplus


def _describe(surplus: dict[str, list[Resource]], before: Snapshot) -> str:
    """``made connections twice: 'NetSuite'``; what an uninstall should have removed but
    left is ``left ... behind``."""
    parts = []
    for kind, extra in surplus.items():
        left = [r for r in extra if (r.resource, r.id) in before]
        made = [r for r in extra if (r.resource, r.id) not in before]
        if made:
            parts.append(f"made {kind} twice: {_names(made)}")
        if left:
            parts.append(f"left {kind} behind: {_names(left)}")
    return "; ".join(parts)


def _names(resources: list[Resource]) -> str:
    return ", ".join(repr(name) for name in dict.fromkeys(r.name for r in resources))


def leaks_of(clean: CleanRun) -> list[Leak]:
    """What the install made that the clean uninstall left; nothing when it did not finish
    (its unfinished part would be counted, not what the connector forgets)."""
    if clean.uninstall is None or clean.uninstall.kind != "done":
        return []
    return [
        Leak(resource, clean.made[key].step)
        for key, resource in clean.remaining.items()
        if key in clean.made and clean.made[key].phase == "install"
    ]
