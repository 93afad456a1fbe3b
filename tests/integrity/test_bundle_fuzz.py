"""Hostile bundles: any JSON in any field yields an IntegrityError, never a crash or a pass."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.integrity import make_model
from modelward.integrity import IntegrityError, Manifest, hash_model
from modelward.integrity.bundle import Bundle, make_bundle, manifest_from_statement, statement
from modelward.integrity.keys import generate

KEY = generate("p256")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return hash_model(make_model(tmp_path_factory.mktemp("fuzz") / "m"), cache=None)


def _set(doc: dict[str, Any], path: list[Any], value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


FIELDS: list[list[Any]] = [
    ["mediaType"],
    ["verificationMaterial"],
    ["verificationMaterial", "publicKey"],
    ["verificationMaterial", "publicKey", "hint"],
    ["dsseEnvelope"],
    ["dsseEnvelope", "payload"],
    ["dsseEnvelope", "payloadType"],
    ["dsseEnvelope", "signatures"],
]


@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_field_replaced_never_crashes_or_passes(
    manifest: Manifest, field: list[Any], value: Any
) -> None:
    doc = make_bundle(manifest, KEY)
    original = json.dumps(doc, sort_keys=True)
    _set(doc, field, value)
    if json.dumps(doc, sort_keys=True) == original:
        return
    try:
        verified = Bundle.parse(doc).verify_with_key(KEY.public_key())
    except IntegrityError:
        return
    # Only the unsigned key hint may change (or go, as in older bundles) and still pass,
    # and then what passes is exactly the signed manifest.
    assert field[:2] == ["verificationMaterial", "publicKey"]
    assert verified.resources() == manifest.resources()


STATEMENT_FIELDS: list[list[Any]] = [
    ["_type"],
    ["subject"],
    ["subject", 0],
    ["subject", 0, "digest"],
    ["predicateType"],
    ["predicate"],
    ["predicate", "serialization"],
    ["predicate", "serialization", "method"],
    ["predicate", "serialization", "hash_type"],
    ["predicate", "serialization", "ignore_paths"],
    ["predicate", "resources"],
    ["predicate", "sizes"],
]


@given(field=st.sampled_from(STATEMENT_FIELDS), value=JSON)
def test_signed_but_malformed_statement_is_a_bundle_error(
    manifest: Manifest, field: list[Any], value: Any
) -> None:
    doc = statement(manifest)
    _set(doc, field, value)
    try:
        parsed = manifest_from_statement(doc)
    except IntegrityError:
        return
    # Whatever parses must still describe exactly the signed resources.
    assert parsed.resources() == manifest.resources()


def test_payload_bytes_are_what_is_signed(manifest: Manifest, tmp_path: Path) -> None:
    doc = make_bundle(manifest, KEY)
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    assert payload == statement(manifest)
    assert Bundle.parse(doc).verify_with_key(KEY.public_key()).resources() == manifest.resources()
