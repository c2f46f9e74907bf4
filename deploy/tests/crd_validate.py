"""Validates custom-resource objects against a CRD's openAPIV3Schema the way the API
server would, offline: structural defaults first, then the OpenAPI schema (as JSON
Schema, with unknown fields rejected like `kubectl apply --validate=strict`), then the
CEL rules (`x-kubernetes-validations`) evaluated with cel-python.

Not covered (documented limits): CEL transition rules (`oldSelf`), `messageExpression`,
the Kubernetes CEL extension libraries (quantity(), url(), …; rules using them are
reported as errors so they are never silently skipped), and `x-kubernetes-list-type`
uniqueness.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import celpy
import jsonschema


@dataclass
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


def served_schema(crd: dict, version: str | None = None) -> dict:
    versions = crd["spec"]["versions"]
    v = next(v for v in versions if (version is None and v.get("storage")) or v["name"] == version)
    return v["schema"]["openAPIV3Schema"]


def to_json_schema(node: dict) -> dict:
    """OpenAPI v3 structural schema -> JSON Schema (draft 7) with strict objects."""
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-") or k in ("nullable", "format", "example", "externalDocs"):
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = to_json_schema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [to_json_schema(s) for s in v]
        else:
            out[k] = v
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf", []) + [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def apply_defaults(schema: dict, value):
    """Fills `default`s of absent properties, recursively, like API-server defaulting."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in schema.get("properties", {}):
                    value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


_env = celpy.Environment()
_programs: dict[str, object] = {}


def _program(rule: str):
    if rule not in _programs:
        _programs[rule] = _env.program(_env.compile(rule))
    return _programs[rule]


def cel_problems(schema: dict, value, path: str = "") -> list[Problem]:
    problems = []
    for v in schema.get("x-kubernetes-validations", []):
        rule = v["rule"]
        if "oldSelf" in rule:
            continue  # transition rule: only meaningful on updates
        try:
            result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as err:  # noqa: BLE001 - report, never skip silently
            problems.append(Problem(path, f"CEL rule could not be evaluated offline: {rule!r}: {err}"))
            continue
        if isinstance(result, Exception):
            problems.append(Problem(path, f"CEL rule {rule!r} raised {result}"))
        elif not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            problems.append(Problem(path, v.get("message") or f"failed rule: {rule}"))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value and value[name] is not None:
                problems += cel_problems(sub, value[name], f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in schema.get("properties", {}):
                    problems += cel_problems(extra, item, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += cel_problems(schema["items"], item, f"{path}[{i}]")
    return problems


def validate(crd: dict, obj: dict) -> list[Problem]:
    """All problems of `obj` (empty when the API server would accept it)."""
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    problems = []
    api_version = obj.get("apiVersion", "")
    if api_version.split("/")[0] != group or kind != obj.get("kind"):
        return [Problem("", f"not a {kind}.{group}: {api_version} {obj.get('kind')}")]
    version = api_version.split("/", 1)[1]
    if version not in [v["name"] for v in crd["spec"]["versions"] if v.get("served")]:
        return [Problem("apiVersion", f"version {version} is not served")]
    schema = served_schema(crd, version)
    obj = apply_defaults(schema, copy.deepcopy(obj))
    # metadata is validated by the API server itself, not by the CRD schema
    js = to_json_schema(schema)
    js.setdefault("properties", {})["metadata"] = {"type": "object"}
    js["properties"].setdefault("apiVersion", {"type": "string"})
    js["properties"].setdefault("kind", {"type": "string"})
    for err in jsonschema.Draft7Validator(js).iter_errors(obj):
        problems.append(Problem("." + ".".join(map(str, err.absolute_path)), err.message))
    meta = obj.get("metadata", {})
    if not meta.get("name"):
        problems.append(Problem(".metadata.name", "required"))
    if crd["spec"]["scope"] == "Namespaced" and not meta.get("namespace"):
        problems.append(Problem(".metadata.namespace", "examples must name their namespace"))
    if not problems:
        problems += cel_problems(schema, obj)
    return problems
