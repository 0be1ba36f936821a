"""A function's configuration as template.yaml declares it: handler, timeout, memory, Environment.

`!Ref`s are resolved the way a deployment would resolve them, to local values: a bucket to the
name the local S3 uses, a parameter to its Default (or a given override).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128


class _CloudFormationLoader(yaml.SafeLoader):
    """Keeps CloudFormation's short-form intrinsics (!Ref, !Sub...) as their long-form dicts."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(), Loader=_CloudFormationLoader)
    assert isinstance(loaded, dict)
    return loaded


@dataclass(frozen=True)
class TemplateFunction:
    logical_id: str
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]


def image_functions(template: Mapping[str, Any]) -> list[str]:
    """The logical ids of the template's image functions, in template order."""
    return [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function" and resource["Properties"].get("PackageType") == "Image"
    ]


def template_function(
    template: Mapping[str, Any],
    logical_id: str,
    *,
    resources: Mapping[str, str],
    parameters: Mapping[str, str] | None = None,
    default_handler: str | None = None,
) -> TemplateFunction:
    """`resources` maps logical ids (buckets) to the names they have locally."""
    properties = template["Resources"][logical_id]["Properties"]
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    refs = _Refs(template, resources, parameters or {})
    variables = {
        **((globals_.get("Environment") or {}).get("Variables") or {}),
        **((properties.get("Environment") or {}).get("Variables") or {}),
    }
    command = (properties.get("ImageConfig") or {}).get("Command") or [default_handler]
    return TemplateFunction(
        logical_id=logical_id,
        handler=str(command[0]),
        timeout_s=int(refs.value(properties.get("Timeout", globals_.get("Timeout", DEFAULT_TIMEOUT_S)))),
        memory_mb=int(refs.value(properties.get("MemorySize", globals_.get("MemorySize", DEFAULT_MEMORY_MB)))),
        environment={name: str(refs.value(value)) for name, value in variables.items()},
    )


# Queue properties that are attributes of the queue itself (CreateQueue's names).
_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")


def queue_attributes(
    template: Mapping[str, Any],
    logical_id: str,
    *,
    resources: Mapping[str, str],
    parameters: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An AWS::SQS::Queue's CreateQueue attributes as the template declares them; `resources` maps a
    `!GetAtt Queue.Arn` (as "Queue.Arn") to the local queue's ARN."""
    properties = template["Resources"][logical_id].get("Properties") or {}
    refs = _Refs(template, resources, parameters or {})
    attributes = {name: str(refs.value(properties[name])) for name in _QUEUE_ATTRIBUTES if name in properties}
    if "RedrivePolicy" in properties:
        policy = {name: refs.value(value) for name, value in properties["RedrivePolicy"].items()}
        attributes["RedrivePolicy"] = json.dumps(policy)
    return attributes


class _Refs:
    def __init__(self, template: Mapping[str, Any], resources: Mapping[str, str], parameters: Mapping[str, str]):
        self._parameters = template.get("Parameters") or {}
        self._resources = resources
        self._overrides = parameters

    def value(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::GetAtt"}:
            attribute = value["Fn::GetAtt"]
            name = attribute if isinstance(attribute, str) else ".".join(attribute)
            if name not in self._resources:
                raise KeyError(f"!GetAtt {name}: no local value (pass it in resources)")
            return self._resources[name]
        if set(value) != {"Ref"}:
            raise ValueError(f"only !Ref and !GetAtt are resolved locally, not {value}")
        name = value["Ref"]
        if name in self._overrides:
            return self._overrides[name]
        if name in self._resources:
            return self._resources[name]
        if name in self._parameters:
            return self._parameters[name]["Default"]
        if name == "AWS::Region":
            return "us-east-1"
        raise KeyError(f"!Ref {name}: no local value (pass it in resources or parameters)")
