#!/usr/bin/python3
"""Checks hub/openapi.json, and answers of the real hubd against it (tests/hub/openapi_test.cc).

Usage: openapi_check.py SPEC [CALLS]
  SPEC   hub/openapi.json (or the copy hubd served)
  CALLS  JSON list of {"method", "path" (the spec's template), "status", "content_type", "body"}

(a) structure: OpenAPI 3.1 document fields, unique operationIds, path parameters declared for
    every {name} of the template and nothing else, responses with status codes and
    descriptions, security requirements naming declared schemes, every $ref resolving, and
    every component schema a valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1);
(b) every answer: its status documented for the operation, its content type documented for
    that status, and a JSON body valid against the documented schema;
(c) every operation of the spec called at least once.
Validation is python3-jsonschema's (Debian), not ours. Exit 0 when all holds, else 1 with
one line per finding.
"""
import json
import re
import sys

from jsonschema import Draft202012Validator

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
problems = []


def fail(msg):
    problems.append(msg)


def resolve(spec, ref):
    if not ref.startswith("#/"):
        return None
    node = spec
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def walk_refs(spec, node, where):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and resolve(spec, ref) is None:
            fail(f"{where}: $ref {ref} does not resolve")
        for k, v in node.items():
            walk_refs(spec, v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_refs(spec, v, f"{where}/{i}")


def deref(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(spec, node["$ref"]) or {}
    return node


def check_structure(spec):
    if not str(spec.get("openapi", "")).startswith("3.1."):
        fail("openapi: must be 3.1.x")
    info = spec.get("info", {})
    for key in ("title", "version"):
        if not isinstance(info.get(key), str) or not info[key]:
            fail(f"info.{key}: missing")
    walk_refs(spec, spec, "#")
    components = spec.get("components", {})
    schemes = components.get("securitySchemes", {})
    for name, schema in components.get("schemas", {}).items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # the library's SchemaError, with its message
            fail(f"components.schemas.{name}: {e}")
    op_ids = {}
    paths = spec.get("paths")
    if not isinstance(paths, dict) or not paths:
        fail("paths: missing")
        return
    for path, item in paths.items():
        if not path.startswith("/"):
            fail(f"{path}: must start with /")
        names = re.findall(r"{([^}]+)}", path)
        for method, op in item.items():
            if method not in METHODS:
                fail(f"{path}: {method} is not an HTTP method")
                continue
            where = f"{method.upper()} {path}"
            oid = op.get("operationId")
            if not isinstance(oid, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", oid):
                fail(f"{where}: operationId missing or not an identifier")
            elif oid in op_ids:
                fail(f"{where}: operationId {oid} also used by {op_ids[oid]}")
            else:
                op_ids[oid] = where
            params = [deref(spec, p) for p in op.get("parameters", [])]
            declared = [p.get("name") for p in params if p.get("in") == "path"]
            if sorted(declared) != sorted(names):
                fail(f"{where}: path parameters {declared} differ from the template's {names}")
            for p in params:
                if p.get("in") not in ("path", "query", "header", "cookie") or not p.get("name"):
                    fail(f"{where}: parameter {p} needs name and in")
                if p.get("in") == "path" and p.get("required") is not True:
                    fail(f"{where}: path parameter {p.get('name')} must be required")
                if "schema" in p:
                    try:
                        Draft202012Validator.check_schema(p["schema"])
                    except Exception as e:
                        fail(f"{where}: parameter {p.get('name')}: {e}")
            responses = op.get("responses")
            if not isinstance(responses, dict) or not responses:
                fail(f"{where}: no responses")
                continue
            for status, resp in responses.items():
                if not re.fullmatch(r"[1-5]([0-9]{2}|XX)", status):
                    fail(f"{where}: response key {status} is not a status")
                if not isinstance(deref(spec, resp).get("description"), str):
                    fail(f"{where}: response {status} has no description")
            for req in op.get("security", spec.get("security", [])):
                for scheme in req:
                    if scheme not in schemes:
                        fail(f"{where}: security scheme {scheme} is not declared")


def media_type(content_type):
    return content_type.split(";")[0].strip().lower()


def check_calls(spec, calls):
    called = set()
    for c in calls:
        where = f"{c['method']} {c['path']} -> {c['status']}"
        op = spec["paths"].get(c["path"], {}).get(c["method"].lower())
        if op is None:
            fail(f"{where}: no such operation in the spec")
            continue
        called.add((c["path"], c["method"].lower()))
        resp = op["responses"].get(str(c["status"]))
        if resp is None:
            fail(f"{where}: status not documented (documented: {sorted(op['responses'])})")
            continue
        resp = deref(spec, resp)
        content = resp.get("content", {})
        ctype = media_type(c.get("content_type", ""))
        if not ctype:
            if content and c.get("body"):
                fail(f"{where}: a body without Content-Type")
            continue
        if ctype not in content:
            fail(f"{where}: content type {ctype} not documented (documented: {sorted(content)})")
            continue
        if ctype != "application/json":
            continue
        try:
            body = json.loads(c["body"])
        except ValueError as e:
            fail(f"{where}: body is not JSON: {e}")
            continue
        schema = dict(content[ctype].get("schema", {}))
        schema["components"] = spec.get("components", {})  # the $refs resolve against this root
        for e in Draft202012Validator(schema).iter_errors(body):
            path = "/".join(str(p) for p in e.absolute_path)
            fail(f"{where}: body at /{path}: {e.message}")
    for path, item in spec["paths"].items():
        for method in item:
            if (path, method) not in called:
                fail(f"{method.upper()} {path}: never called by the test")


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    check_structure(spec)
    if len(sys.argv) > 2 and not problems:
        with open(sys.argv[2]) as f:
            check_calls(spec, json.load(f))
    for p in problems:
        print(p)
    print(f"openapi_check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
