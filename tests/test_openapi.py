"""The OpenAPI document describes every body, and the server holds to it under schemathesis.

Runs against the shared server (admin key set, no API keys), fetching the document the server serves.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
import schemathesis
from conftest import ADMIN_KEY, DEMO
from helpers import wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.schemas import MAX_INT32

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ERRORS = {"400", "401", "404", "408", "413", "429", "500", "503"}
MAX_TOKENS = 8
"""Generated chat requests are capped to this many tokens, so the run stays short."""
REQUEST_TIMEOUT = 60
"""A request taking longer than this counts as a hang."""
EXAMPLES = 30
"""Generated cases per operation and mode (valid and invalid data)."""


@pytest.fixture(scope="module")
def document(http: httpx.Client) -> dict:
    response = http.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def test_chat_completions_request_and_responses(document):
    operation = document["paths"]["/v1/chat/completions"]["post"]
    assert operation["requestBody"]["required"] is True
    assert operation["requestBody"]["content"]["application/json"]["schema"] == ref("ChatCompletionRequest")
    ok = operation["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == ref("ChatCompletion")
    events = ok["text/event-stream"]["schema"]
    assert events["properties"]["data"]["type"] == "string"  # an SSE event, as clients parse it
    assert events["x-data-schema"] == ref("ChatCompletionChunk")
    assert ERRORS <= operation["responses"].keys()
    for status in ERRORS:
        assert operation["responses"][status]["content"]["application/json"]["schema"] == ref("ErrorResponse")


def test_component_schemas_are_the_wire_types(document):
    schemas = document["components"]["schemas"]
    request = schemas["ChatCompletionRequest"]
    assert set(request["required"]) == {"messages", "model"}
    assert request["properties"]["messages"]["minItems"] == 1
    assert request["properties"]["n"]["maximum"] == 8
    roles = request["properties"]["messages"]["items"]["discriminator"]["mapping"]
    assert set(roles) == {"system", "developer", "user", "assistant", "tool"}
    error = schemas["ErrorBody"]
    assert set(error["required"]) == {"message", "type", "param", "code"}
    for name in ("ChatCompletion", "ChatCompletionChunk", "ModelList", "Model", "Health", "AdminModel"):
        assert schemas[name]["type"] == "object"


@pytest.mark.parametrize(
    ("path", "method", "status", "media_type", "schema"),
    [
        ("/v1/models", "get", "200", "application/json", "ModelList"),
        ("/v1/models/{model_id}", "get", "200", "application/json", "Model"),
        ("/v1/models/{model_id}", "get", "404", "application/json", "ErrorResponse"),
        ("/health", "get", "200", "application/json", "Health"),
        ("/admin/models", "get", "200", "application/json", "AdminModelList"),
        ("/admin/models", "post", "200", "application/json", "AdminModel"),
        ("/admin/models", "post", "202", "application/json", "AdminModel"),
        ("/admin/models", "post", "409", "application/json", "ErrorResponse"),
        ("/admin/models/{model_id}", "delete", "200", "application/json", "AdminModel"),
        ("/metrics", "get", "200", "text/plain", None),
    ],
)
def test_every_operation_has_its_bodies(document, path, method, status, media_type, schema):
    content = document["paths"][path][method]["responses"][status]["content"][media_type]
    assert content["schema"] == (
        ref(schema) if schema else {"type": "string", "description": content["schema"]["description"]}
    )


def test_admin_load_takes_a_model_spec_and_is_secured(document):
    operation = document["paths"]["/admin/models"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == ref("ModelSpec")
    assert document["components"]["schemas"]["ModelSpec"]["additionalProperties"] is False
    assert {"bearer": []} in operation["security"]
    assert "security" not in document["paths"]["/v1/models"]["get"], "no API keys on this server"
    assert "security" not in document["paths"]["/health"]["get"]


# --- schemathesis -----------------------------------------------------------------------------------
# Driven through its Python API with Hypothesis directly: schemathesis' pytest plugin does not run under
# pytest 9 (it reads a private attribute pytest removed).

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# The generating operations and the fields that bound their answers.
GENERATING = {
    "/v1/chat/completions": ("max_tokens", "max_completion_tokens"),
    "/v1/responses": ("max_output_tokens",),
    "/responses": ("max_output_tokens",),
    "/v1/messages": ("max_tokens",),
    "/messages": ("max_tokens",),
}
COUNTING = {"/v1/messages/count_tokens", "/messages/count_tokens", "/v1/tokenize", "/tokenize"}


def short_chats(context, body):
    """``map_body`` hook: generating requests go to the served model and stay short; counting ones go to
    the served model; other bodies pass as made."""
    path = context.operation.path
    if not isinstance(body, dict) or (path not in GENERATING and path not in COUNTING):
        return body
    if isinstance(body.get("model"), str):
        body["model"] = DEMO
    if path in COUNTING:
        return body
    capped = False
    for field in GENERATING[path]:
        value = body.get(field)
        # Only a valid value is shortened: capping 2**31 to 8 would turn a case made to be refused into one
        # that must be served, and the negative-data check would blame the server.
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT32:
            body[field] = min(value, MAX_TOKENS)
            capped = True
    first = GENERATING[path][0]
    if not capped and body.get(first) is None:  # absent or null: the answer could run to the end of the
        body[first] = MAX_TOKENS  # context window (an invalid value is left for the server to refuse)
    return body


def fuzz(operation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # nothing written into the work tree
        derandomize=True,  # the same cases on every run, so a failure is not a matter of luck
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # shrinking a failure can take minutes; the case is shown
    )
    def run(case):
        case.call_and_validate(headers=ADMIN, timeout=REQUEST_TIMEOUT, checks=CHECKS)

    run()


def test_server_holds_to_its_document(server_root):
    schema = schemathesis.openapi.from_url(f"{server_root}/schema/openapi.json", timeout=REQUEST_TIMEOUT)
    schema.hook("map_body")(short_chats)
    # Loading and unloading models are left out: each load takes seconds and a model's memory.
    schema = (
        schema.exclude(method="POST", path="/admin/models")
        .exclude(method="POST", path="/admin/models/{model_id}")
        .exclude(method="DELETE", path="/admin/models/{model_id}")
    )
    fuzzed, negated = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzz(operation, GenerationMode.POSITIVE)
        fuzzed.append(operation.label)
        try:
            fuzz(operation, GenerationMode.NEGATIVE)
        except Unsatisfiable:  # nothing to make invalid: no body, or only string path parameters
            continue
        negated.append(operation.label)
    assert "POST /v1/chat/completions" in fuzzed and "GET /admin/models" in fuzzed
    for label in ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/messages", "POST /tokenize"):
        assert label in negated
    assert not any(label.startswith(("POST /admin", "DELETE /admin")) for label in fuzzed)


def test_server_still_serves_after_the_fuzzing(http, client):
    assert http.get("/health").status_code == 200
    answer = client.chat.completions.create(
        model=DEMO, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
    )
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_admin_loads_and_unloads_hold_to_the_document(server_root, http):
    """The operations the run above leaves out, fuzzed on their own (the admin API open to the fuzzer
    through the admin key): no 500, every answer as documented, and whatever the fuzzer managed to
    register can be deleted again, with /ready untouched. Sources it makes up are never models, so each
    load fails fast (a path that does not exist) or is refused."""

    def registered() -> dict[str, str]:
        return {m["id"]: m["state"] for m in http.get("/admin/models", headers=ADMIN).json()["data"]}

    before = registered()
    schema = schemathesis.openapi.from_url(f"{server_root}/schema/openapi.json", timeout=REQUEST_TIMEOUT)
    schema = (
        schema.include(path="/admin/models", method="POST")
        .include(path="/admin/models/{model_id}", method="POST")
        .include(path="/admin/models/{model_id}", method="DELETE")
    )
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    assert sorted(labels) == [
        "DELETE /admin/models/{model_id}",
        "POST /admin/models",
        "POST /admin/models/{model_id}",
    ]
    wait_for(lambda: "loading" not in registered().values(), timeout=120, what="the fuzzer's loads to end")
    added = [model for model in registered() if model not in before]
    for model in added:
        removed = http.delete(f"/admin/models/{quote(model, safe='/')}", headers=ADMIN)
        assert removed.status_code == 200, (model, removed.text)
    assert registered().keys() == before.keys()
    assert http.get("/ready").status_code == 200
