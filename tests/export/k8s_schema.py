"""Strict offline validation of Kubernetes objects against the API's OpenAPI models.

The models are Debian's python3-kubernetes (generated from the Kubernetes OpenAPI spec): every
field of every object must be one the model declares (unknown fields are errors, as with
`kubectl apply --validate=strict`), every value must have the declared type, and the models'
own required-field checks run on deserialisation.

    validate(obj) -> list of "path: problem" (empty when valid)
    python3 k8s_schema.py FILE.yaml...   exits 1 and prints the problems if any
"""
from __future__ import annotations

import re
import sys

import yaml
from kubernetes import client
from kubernetes.client import models

KINDS = {("v1", "ConfigMap"): "V1ConfigMap", ("v1", "Service"): "V1Service",
         ("apps/v1", "Deployment"): "V1Deployment", ("batch/v1", "Job"): "V1Job",
         ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler"}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def _check(value, type_name: str, path: str, problems: list[str]) -> None:
    if value is None:
        problems.append(f"{path}: null value")
        return
    if type_name in SCALARS:
        expected = SCALARS[type_name]
        if not isinstance(value, expected) or (type_name == "int" and isinstance(value, bool)):
            problems.append(f"{path}: expected {type_name}, got {type(value).__name__}")
        return
    if type_name == "object":  # IntOrString, Quantity, free-form
        if not isinstance(value, (str, int)):
            problems.append(f"{path}: expected a string or integer")
        return
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _check(item, match.group(1), f"{path}[{i}]", problems)
        return
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for key, item in value.items():
            _check(item, match.group(1), f"{path}.{key}", problems)
        return
    model = getattr(models, type_name, None)
    if model is None:
        problems.append(f"{path}: no model {type_name} (validator cannot check it)")
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object ({type_name})")
        return
    fields = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            _check(item, model.openapi_types[fields[key]], f"{path}.{key}", problems)


def validate(obj) -> list[str]:
    if not isinstance(obj, dict):
        return ["document is not an object"]
    kind = KINDS.get((obj.get("apiVersion"), obj.get("kind")))
    if kind is None:
        return [f"unsupported apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')}"]
    problems: list[str] = []
    _check(obj, kind, obj["kind"], problems)
    if not problems:
        try:  # the models' own checks (required fields, enums)
            client.ApiClient()._ApiClient__deserialize(obj, kind)
        except (ValueError, TypeError) as error:
            problems.append(f"{obj['kind']}: {error}")
    return problems


def validate_text(text: str) -> list[str]:
    problems = []
    for i, doc in enumerate(d for d in yaml.safe_load_all(text) if d is not None):
        problems += [f"document {i + 1}: {p}" for p in validate(doc)]
    return problems


if __name__ == "__main__":
    failed = False
    for name in sys.argv[1:]:
        with open(name) as f:
            for problem in validate_text(f.read()):
                print(f"{name}: {problem}")
                failed = True
    sys.exit(1 if failed else 0)
