"""The typed views of integration documents and connector manifests."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from engine.errors import BadInput, ConnectorInvalid
from engine.models import ConnectorManifest, Integration, field_path, parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


def test_seed_document_round_trips(seed_document: dict[str, Any]) -> None:
    """The seed's sample document parses and comes back exactly as it went in."""
    integration = parse(Integration, seed_document, what="seed")
    assert integration.mode == "install"
    assert integration.install[0].connection_id == "57974ed21d2e4ab87ae46d99"
    assert integration.install[2].install_url == ""
    assert integration.to_wire() == seed_document


@given(
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(
            lambda k: (
                k not in Integration.model_fields
                and k not in {"_id", "lastModified", "_connectorId", "updateInProgress"}
            )
        ),
        json_values,
        max_size=4,
    ),
    step_extra=st.dictionaries(st.sampled_from(["hidden", "x-custom", "meta"]), json_values),
)
def test_unknown_fields_survive(extra: dict[str, Any], step_extra: dict[str, Any]) -> None:
    """Fields the model does not know survive a parse and dump, on the document and its steps."""
    doc = {
        "mode": "settings",
        "install": [
            {
                "name": "a",
                "installerFunction": "f",
                "uninstallerFunction": "g",
                "completed": True,
                **step_extra,
            }
        ],
        **extra,
    }
    assert parse(Integration, copy.deepcopy(doc), what="doc").to_wire() == doc


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(version=1), "version"),
        (lambda d: d.update(mode="paused"), "mode"),
        (lambda d: d.pop("install"), "install"),
        (lambda d: d["install"][2].update(completed="yes"), "install[2].completed"),
        (lambda d: d["install"][1].update(name=""), "install[1].name"),
        (lambda d: d["install"][3].pop("installerFunction"), "install[3].installerFunction"),
        (lambda d: d["install"][3].update(name="NetSuite Connection"), "install[3].name"),
        (lambda d: d.update(updateInProgress="false"), "updateInProgress"),
    ],
)
def test_bad_documents_name_the_field(
    seed_document: dict[str, Any], change: Any, field: str
) -> None:
    """Strict types: wrong values are errors naming the field path, not coerced."""
    change(seed_document)
    with pytest.raises(BadInput) as info:
        parse(Integration, seed_document, what="integration")
    assert info.value.field == field
    assert field in str(info.value)


def test_oversized_document_names_its_largest_field(seed_document: dict[str, Any]) -> None:
    """A document over 5 MB is refused, naming the field that makes it so."""
    seed_document["install"][1]["description"] = "x" * (6 * 1024 * 1024)
    with pytest.raises(BadInput) as info:
        parse(Integration, seed_document, what="integration")
    assert info.value.field == "install[1].description"


def test_not_an_object_is_refused() -> None:
    """A JSON array where a document belongs is an error, not a crash."""
    with pytest.raises(ConnectorInvalid, match="expected a JSON object"):
        parse(ConnectorManifest, [], what="connector.json", error=ConnectorInvalid)


def test_manifest_lists_every_function_name() -> None:
    """function_names() covers connector-level and step functions with their field paths."""
    manifest = ConnectorManifest.model_validate(
        {
            "name": "c",
            "_connectorId": "id",
            "version": "1",
            "installerFunction": "ci",
            "install": [{"name": "s", "installerFunction": "i", "uninstallerFunction": "u"}],
        }
    )
    assert manifest.function_names() == [
        ("installerFunction", "ci"),
        ("install[0].installerFunction", "i"),
        ("install[0].uninstallerFunction", "u"),
    ]


MANIFEST = {
    "name": "c",
    "_connectorId": "id",
    "version": "1",
    "install": [{"name": "s", "installerFunction": "i", "uninstallerFunction": "u"}],
}


@pytest.mark.parametrize(
    ("where", "right", "typo", "said"),
    [
        ((), "install", "instal", "install: Field required (found 'instal': did you mean"),
        (
            ("install", 0),
            "installerFunction",
            "installerFunctoin",
            "install[0].installerFunction: Field required (found 'installerFunctoin'",
        ),
    ],
)
def test_a_misspelled_field_is_named_with_the_one_it_should_be(
    where: tuple[Any, ...], right: str, typo: str, said: str
) -> None:
    """A required field missing beside a key that looks like its typo: the message names
    the key found and asks whether it meant the field (a known field is never taken as a
    typo, even when it looks like one: uninstallerFunction)."""
    manifest = copy.deepcopy(MANIFEST)
    node: Any = manifest
    for part in where:
        node = node[part]
    node[typo] = node.pop(right)
    with pytest.raises(ConnectorInvalid) as info:
        parse(ConnectorManifest, manifest, what="connector.json", error=ConnectorInvalid)
    assert said in str(info.value) and f"did you mean {right!r}?" in str(info.value)
    assert "uninstallerFunction'" not in str(info.value)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("install", 2, "completed"), "install[2].completed"),
        (("mode",), "mode"),
        ((), "(document)"),
    ],
)
def test_field_path(loc: tuple[Any, ...], path: str) -> None:
    """Validation locations read like the document's own paths."""
    assert field_path(loc) == path


def test_seed_json_is_plain_json(seed_document: dict[str, Any]) -> None:
    """The fixture is the seed's own JSON (guards the regex that extracts it)."""
    assert json.loads(json.dumps(seed_document))["_connectorId"] == "57179182e0a908200c2781d9"
