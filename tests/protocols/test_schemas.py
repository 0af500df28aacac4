from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from protocols import canonical, dsse, schemas, statements
from protocols.errors import InputError, SchemaError

EXPECTED = {"commitment-predicate-v1", "result-predicate-v1", "statement-v1", "watermark-file-v1"}


@pytest.fixture(scope="module")
def docs(data_dir, golden_public_key):
    """Valid golden documents of each kind."""

    def statement(name):
        env = dsse.read_envelope(data_dir / name)
        return statements.verify_statement(env, golden_public_key)

    commitment = statement("commitment-v1.dsse.json")
    result = statement("result-v1.dsse.json")
    return {
        "statement-v1": commitment,
        "commitment-predicate-v1": commitment["predicate"],
        "result-predicate-v1": result["predicate"],
        "watermark-file-v1": canonical.read_json(data_dir / "watermark-v1.json"),
    }


def test_bundled_schemas_are_valid_2020_12_with_matching_ids():
    assert EXPECTED <= set(schemas.list_schemas())
    for name in schemas.list_schemas():
        schema = schemas.load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://mapguard.dev/schemas/{name}.json"


def test_load_schema_returns_a_copy():
    schemas.load_schema("statement-v1")["title"] = "changed"
    assert schemas.load_schema("statement-v1")["title"] != "changed"


def test_unknown_schema_lists_known_ones():
    with pytest.raises(
        InputError, match="unknown schema 'statement-v9'; choose one of: .*statement-v1"
    ):
        schemas.validate({}, "statement-v9")


def test_golden_documents_are_valid(docs):
    for name, doc in docs.items():
        schemas.validate(doc, name)


def _set(path, value):
    def apply(doc):
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return apply


def _delete(path):
    def apply(doc):
        for key in path[:-1]:
            doc = doc[key]
        del doc[path[-1]]

    return apply


CASES = [
    # (schema, edit, expected message fragment)
    ("statement-v1", _set(["_type"], "https://in-toto.io/Statement/v0.1"), "$._type: "),
    ("statement-v1", _set(["extra"], 1), "$: Additional properties are not allowed ('extra'"),
    ("statement-v1", _delete(["predicate"]), "$: 'predicate' is a required property"),
    (
        "commitment-predicate-v1",
        _set(["schema_version"], "2"),
        "$.schema_version: '1' was expected",
    ),
    ("commitment-predicate-v1", _set(["schema_version"], 1), "$.schema_version: '1' was expected"),
    ("commitment-predicate-v1", _set(["created"], "2025-01-01 00:00"), "$.created: '2025-01-01"),
    ("commitment-predicate-v1", _set(["owner_key_fingerprint"], "ab" * 32), "$.owner_key_fingerpr"),
    ("commitment-predicate-v1", _set(["commitments", "secret", "nonce"], "00" * 32), "'nonce' was"),
    ("commitment-predicate-v1", _set(["commitments", "trigger", "algorithm"], "md5"), "algorithm"),
    ("commitment-predicate-v1", _delete(["commitments", "verification_set"]), "verification_set"),
    (
        "commitment-predicate-v1",
        _set(["method", "parameters", "nonce"], "00"),
        "$.method.parameters",
    ),
    (
        "commitment-predicate-v1",
        _set(["trigger_family", "parameters", "deep"], [{"x": {"secret": "ab"}}]),
        "$.trigger_family.parameters.deep[0].x",
    ),
    ("commitment-predicate-v1", _set(["verification", "n_secrets"], 0), "$.verification.n_secrets"),
    ("commitment-predicate-v1", _set(["unexpected"], {}), "Additional properties"),
    ("result-predicate-v1", _set(["test", "pvalue"], 1.5), "$.test.pvalue: 1.5 is greater than"),
    (
        "result-predicate-v1",
        _set(["test", "pvalue"], "0.01"),
        "$.test.pvalue: '0.01' is not of type",
    ),
    ("result-predicate-v1", _set(["test", "alternative"], "bigger"), "$.test.alternative"),
    ("result-predicate-v1", _set(["test", "alpha"], 0), "$.test.alpha: 0 is less than or equal"),
    ("result-predicate-v1", _set(["verdict"], "guilty"), "$.verdict: 'guilty' is not one of"),
    ("result-predicate-v1", _set(["query_mode"], "logits"), "$.query_mode: 'logits' is not one of"),
    ("result-predicate-v1", _set(["queries_used"], -1), "$.queries_used: -1 is less than"),
    ("result-predicate-v1", _set(["effect", "confidence_level"], 95), "$.effect.confidence_level"),
    ("result-predicate-v1", _delete(["negative_controls"]), "'negative_controls' is a required"),
    ("watermark-file-v1", _delete(["openings"]), "$: 'openings' is a required property"),
    ("watermark-file-v1", _set(["secrets"], []), "$.secrets: [] should be non-empty"),
    ("watermark-file-v1", _set(["secrets", 0, "secret"], "abc"), "$.secrets[0].secret: 'abc'"),
    ("watermark-file-v1", _delete(["verification_set", "indices"]), "$.verification_set"),
    ("watermark-file-v1", _set(["openings", "trigger", "nonce"], "00"), "$.openings.trigger.nonce"),
]


@pytest.mark.parametrize(("name", "edit", "fragment"), CASES)
def test_invalid_documents_name_path_and_problem(docs, name, edit, fragment):
    doc = copy.deepcopy(docs[name])
    edit(doc)
    with pytest.raises(SchemaError) as info:
        schemas.validate(doc, name)
    message = str(info.value)
    assert message.startswith(f"{name}: $")
    assert fragment in message, message


def test_every_required_top_level_field_is_enforced(docs):
    for name, doc in docs.items():
        for field in schemas.load_schema(name)["required"]:
            broken = {k: v for k, v in doc.items() if k != field}
            with pytest.raises(SchemaError, match=f"'{field}' is a required property"):
                schemas.validate(broken, name)


def test_permissive_parameter_blocks_accept_new_fields(docs):
    predicate = copy.deepcopy(docs["commitment-predicate-v1"])
    predicate["method"]["parameters"]["new_knob"] = {"depth": [1, 2.5, None]}
    predicate["model"]["architecture"] = "resnet18"
    schemas.validate(predicate, "commitment-predicate-v1")
    watermark = copy.deepcopy(docs["watermark-file-v1"])
    watermark["embed_log"] = {"epochs": 3}
    watermark["secrets"][0]["trigger"]["extra"] = True
    schemas.validate(watermark, "watermark-file-v1")


def test_long_messages_are_truncated(docs):
    doc = copy.deepcopy(docs["result-predicate-v1"])
    doc["verdict"] = "x" * 5000
    with pytest.raises(SchemaError) as info:
        schemas.validate(doc, "result-predicate-v1")
    assert len(str(info.value)) < 400 and str(info.value).endswith("...")


def test_schema_files_are_plain_json(data_dir):
    # json.loads, not our strict loader: the files must be readable by any JSON tool.
    from importlib import resources

    root = resources.files("protocols") / "schemas"
    for entry in root.iterdir():
        if entry.name.endswith(".json"):
            assert isinstance(json.loads(entry.read_text(encoding="utf-8")), dict)
