"""openapi.yaml is a valid OpenAPI 3.1 document and describes exactly the app's HTTP routes.

The routes come from `function_app.app` itself. `FunctionApp.get_functions()` may be called only
once per app, so it is called once, lazily, and cached for the whole session.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM_JSON = "application/problem+json"
# The Functions host answers a missing or wrong function key itself, before any app code runs,
# with an empty body: the one error response that is not a problem document.
HOST_ERRORS = frozenset({"401"})
SPEC_URI = "urn:acs-email-insights:openapi"


@cache
def spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def declared_routes() -> dict[tuple[str, str], str]:
    """(METHOD, /api/route) → Python function name, for every HTTP trigger of function_app.

    Cached: `get_functions()` raises when called a second time on the same FunctionApp.
    """
    from .conftest import registered_functions

    routes: dict[tuple[str, str], str] = {}
    for fn in registered_functions():
        for binding in fn.get_bindings():
            if binding.type != "httpTrigger":
                continue
            assert binding.methods, f"{fn.get_function_name()} accepts every method: list them"
            route = (binding.route or fn.get_function_name()).strip("/")
            for method in binding.methods:
                name = str(getattr(method, "value", method)).upper()
                key = (name, f"/api/{route}")
                assert key not in routes, f"{key} is declared twice"
                routes[key] = fn.get_function_name()
    return routes


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in spec()["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (`#/components/...`) to the object they name."""
    seen = set()
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are expected, got {ref}"
        assert ref not in seen, f"reference cycle at {ref}"
        seen.add(ref)
        node = spec()
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_spec_is_valid_openapi_3_1() -> None:
    assert spec()["openapi"].startswith("3.1.")
    validate(spec(), cls=OpenAPIV31SpecValidator)


def test_paths_match_the_declared_http_routes() -> None:
    assert set(operations()) == set(declared_routes())


def test_operation_ids_are_the_python_function_names() -> None:
    documented = {key: op.get("operationId") for key, op in operations().items()}
    assert documented == declared_routes()


def test_error_responses_are_problem_documents() -> None:
    for (method, path), op in operations().items():
        responses = op["responses"]
        errors = [code for code in responses if str(code)[0] in "45" or code == "default"]
        assert errors, f"{method} {path} documents no error responses"
        assert "500" in responses, f"{method} {path} does not document 500"
        for code in errors:
            response = resolve(responses[code])
            where = f"{method} {path} {code}"
            if code in HOST_ERRORS:
                assert "content" not in response, f"{where}: the host sends no body"
                continue
            content = response.get("content", {})
            assert list(content) == [PROBLEM_JSON], f"{where}: {list(content)}"
            assert resolve(content[PROBLEM_JSON]["schema"]) is resolve(
                {"$ref": "#/components/schemas/Problem"}
            ), f"{where} is not a Problem"


def test_routes_needing_a_key_document_401() -> None:
    for (method, path), op in operations().items():
        anonymous = op.get("security", spec().get("security")) == []
        assert ("401" in op["responses"]) is not anonymous, f"{method} {path}"


def _examples() -> list[Any]:
    """(schema $ref, example value) for every example in the document, with where as its id."""
    found: list[Any] = []

    def media(where: str, node: dict[str, Any]) -> None:
        for media_type, body in node.get("content", {}).items():
            schema = body.get("schema", {})
            if "$ref" not in schema:
                continue
            if "example" in body:
                found.append(
                    pytest.param(schema["$ref"], body["example"], id=f"{where} {media_type}")
                )
            for name, example in body.get("examples", {}).items():
                value = resolve(example)["value"]
                found.append(pytest.param(schema["$ref"], value, id=f"{where} {media_type} {name}"))

    for (method, path), op in operations().items():
        if "requestBody" in op:
            media(f"{method} {path} request", resolve(op["requestBody"]))
        for code, response in op["responses"].items():
            media(f"{method} {path} {code}", resolve(response))
    return found


@pytest.mark.parametrize(("ref", "value"), _examples())
def test_examples_match_their_schemas(ref: str, value: Any) -> None:
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT202012)
    )
    validator = Draft202012Validator(
        {"$ref": SPEC_URI + ref}, registry=registry, format_checker=FormatChecker()
    )
    problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(value)]
    assert not problems, problems
