"""The compiled fast validator (jsonschema_rs) and jsonschema agree on valid and corrupted Items, and are built once.

The corrupted variants are made here, deterministically (seeded): one value of an official example replaced by a
value of another type, an out-of-range number, an empty or odd string, a repeated array element, or removed; an
unknown member added. For every schema the Item declares, the fast answer must equal jsonschema's own
(``not list(iter_errors(...))``).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES_DIR, SCHEMA_DIR

from mlm_export import validate_item
from mlm_export.errors import SchemaNotFoundError
from mlm_export.stac.compiled import compiled_schema, shared_store
from mlm_export.stac.validate import CORE_SCHEMA

EXAMPLES = sorted(EXAMPLES_DIR.glob("item_*.json"))
VARIANTS_PER_EXAMPLE = 100
#: Replacement values: other types, edge numbers (an int-valued float, a huge one), odd strings.
REPLACEMENTS: tuple[Any, ...] = (None, "x", "", "١٢", "1.0.0\n", -1, 0, 2.0, 1.5, 1e300, True, [], {}, [1, 1], {"a": 1})
_REMOVE = object()
_DUPLICATE = object()


def _pointers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in the document (members and array elements, nested)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key)
            yield from _pointers(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*path, index)
            yield from _pointers(child, (*path, index))


def _corrupt(document: dict[str, Any], place: tuple[Any, ...], change: Any) -> dict[str, Any]:
    variant = copy.deepcopy(document)
    parent: Any = variant
    for key in place[:-1]:
        parent = parent[key]
    last = place[-1]
    if change is _REMOVE:
        del parent[last]
    elif change is _DUPLICATE:
        target = parent[last]
        if isinstance(target, list) and target:
            target.append(copy.deepcopy(target[0]))
        elif isinstance(target, dict):
            target["unknown:member"] = 1
    else:
        parent[last] = change
    return variant


def _variants(document: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    places = [p for p in _pointers(document) if p[:1] != ("stac_extensions",) and p != ("type",)]
    changes = [*REPLACEMENTS, _REMOVE, _DUPLICATE]
    return [_corrupt(document, rng.choice(places), rng.choice(changes)) for _ in range(VARIANTS_PER_EXAMPLE)]


def _schema_urls(document: dict[str, Any]) -> list[str]:
    return [CORE_SCHEMA.format(version=document["stac_version"], kind="item"), *document["stac_extensions"]]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fast_and_detailed_validators_agree(path: Path, schema_dir: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    store = shared_store(schema_dir)
    compiled = [compiled_schema(store, url) for url in _schema_urls(document)]
    assert all(c.fast is not None for c in compiled)  # the fast path is really used for every official schema
    for schema in compiled:
        assert schema.fast.is_valid(document) and schema.errors(document) == []
    invalid = 0
    for variant in _variants(document, seed=EXAMPLES.index(path)):
        verdicts = []
        for schema in compiled:
            fast = bool(schema.fast.is_valid(variant))
            detailed = not schema.errors(variant)
            assert fast == detailed, (schema.url, json.dumps(variant)[:2000])
            verdicts.append(fast)
        invalid += not all(verdicts)
    assert 0.2 * VARIANTS_PER_EXAMPLE < invalid < 0.95 * VARIANTS_PER_EXAMPLE  # both answers are exercised


def test_a_corrupted_item_gets_jsonschemas_problems(schema_dir: Path) -> None:
    document = json.loads((EXAMPLES_DIR / "item_eo_bands.json").read_text(encoding="utf-8"))
    document["properties"]["mlm:accelerator"] = "abacus"
    report = validate_item(document, schema_dir, check_files=False)
    assert not report.valid
    problem = next(p for p in report.problems if p.path == "/properties/mlm:accelerator")
    assert problem.source == "schema" and "'abacus' is not one of" in problem.message, report.problems


@pytest.mark.parametrize("version", ["1\u0661.0.0", "1.0.0\n"], ids=["arabic-indic digit", "trailing newline"])
def test_where_the_fast_validator_is_stricter_jsonschema_decides(version: str, schema_dir: Path) -> None:
    """Python's re lets these through the MLM version pattern (any Unicode digit for \\d, '$' before a final newline);
    jsonschema_rs does not. The report is jsonschema's, as without the fast path."""
    document = json.loads((EXAMPLES_DIR / "item_eo_bands.json").read_text(encoding="utf-8"))
    document["properties"]["mlm:framework_version"] = version
    mlm = compiled_schema(shared_store(schema_dir), "https://stac-extensions.github.io/mlm/v1.5.2/schema.json")
    assert mlm.fast.is_valid(document) is False
    assert mlm.errors(document) == []
    assert validate_item(document, schema_dir, check_files=False).valid


def test_validators_are_built_once_per_store_and_url(schema_dir: Path) -> None:
    store = shared_store(schema_dir)
    assert shared_store(schema_dir) is store and shared_store(str(schema_dir)) is store
    url = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
    assert compiled_schema(store, url) is compiled_schema(store, url)


def test_a_reference_outside_the_store_is_still_reported(tmp_path: Path, schema_dir: Path) -> None:
    """The fast validator gets its $refs from the store only: a missing one is the same SchemaNotFoundError."""
    url = "https://example.org/broken/v1.0.0/schema.json"
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "$ref": "https://example.org/missing.json"}
    target = tmp_path / "example.org" / "broken" / "v1.0.0" / "schema.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(schema), encoding="utf-8")
    store = shared_store(tmp_path)
    compiled = compiled_schema(store, url)
    assert compiled.fast is None
    with pytest.raises(SchemaNotFoundError, match="missing.json"):
        compiled.errors({})


def _schema_documents() -> list[Path]:
    return sorted(p for p in SCHEMA_DIR.rglob("*.json") if p.name != "INDEX.json")


def test_draft_of_agrees_with_jsonschema_on_every_shared_schema_and_odd_ones() -> None:
    """The fast path picks its draft without jsonschema: the same class jsonschema's validator_for picks."""
    from jsonschema import validators

    from mlm_export.stac.compiled import draft_of

    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in _schema_documents()]
    assert len(schemas) > 20
    odd = [
        {},
        True,
        {"$schema": "http://json-schema.org/draft-07/schema#"},
        {"$schema": "http://json-schema.org/draft-04/schema"},
        {"$schema": "https://json-schema.org/draft/2020-12/schema"},
        {"$schema": "https://json-schema.org/draft/2019-09/schema#"},
        {"$schema": "http://json-schema.org/draft-03/schema#"},
        {"$schema": "https://example.com/not-a-meta-schema"},
    ]
    for schema in schemas + odd:
        assert draft_of(schema) == validators.validator_for(schema, default=validators.Draft7Validator).__name__
    assert draft_of({"$schema": 7}) is None  # not text: no fast validator, jsonschema decides


def test_valid_items_are_validated_without_importing_jsonschema(tmp_path: Path) -> None:
    """jsonschema and referencing load only when a document is invalid (to explain why), in a fresh interpreter."""
    import subprocess
    import sys
    import textwrap

    broken = json.loads(EXAMPLES[0].read_text(encoding="utf-8"))
    broken["properties"]["mlm:name"] = 12
    (tmp_path / "broken.json").write_text(json.dumps(broken), encoding="utf-8")
    code = textwrap.dedent(
        f"""
        import sys
        from mlm_export import validate_item
        assert validate_item({str(EXAMPLES[0])!r}, schema_dir={str(SCHEMA_DIR)!r}).valid
        print(sorted(m for m in ("jsonschema", "referencing") if m in sys.modules))
        report = validate_item({str(tmp_path / "broken.json")!r}, schema_dir={str(SCHEMA_DIR)!r})
        print(report.valid, any("mlm:name" in str(p) for p in report.problems))
        print(sorted(m for m in ("jsonschema", "referencing") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:3] == ["[]", "False True", "['jsonschema', 'referencing']"], result.stdout
