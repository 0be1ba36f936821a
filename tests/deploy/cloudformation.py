"""Reading template.yaml, running the deploy-time SAM transform on it, and applying its conditions.

The transform itself runs in the tools venv (`sam_transform.py`), with the aws-sam-translator that
SAM CLI pins; this side only starts it and reads its JSON. `resolve_conditions` then does what
CloudFormation does next with the transformed template for a given set of parameter values:
evaluates `Conditions`, drops resources whose condition is false, picks each `Fn::If` branch and
removes `AWS::NoValue`. Every other intrinsic is left as written, to be asserted on as such.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools import tool_path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
HERE = Path(__file__).resolve().parent

NO_VALUE = {"Ref": "AWS::NoValue"}


class TransformRejected(Exception):
    """The SAM transform refused the template, as CloudFormation would report at deploy."""


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form intrinsics (!Ref, !Sub, ...) as dicts."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CloudFormationLoader)


def tool_environment() -> dict[str, str]:
    """Offline: a region for ARNs and fake credentials, so that no SDK goes looking for real ones."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAM_CLI_TELEMETRY": "0",
    }


def transform(given: dict[str, str], template_path: Path = TEMPLATE) -> dict[str, Any]:
    """The CloudFormation template the SAM transform makes of `template_path` for these parameter values."""
    (outcome,) = transform_all([given], template_path)
    if isinstance(outcome, TransformRejected):
        raise outcome
    return outcome


def transform_all(
    combinations: list[dict[str, str]], template_path: Path = TEMPLATE
) -> list[dict[str, Any] | TransformRejected]:
    """The CloudFormation template the SAM transform makes of `template_path` for each of `combinations`
    (a rejection in its place), in one run of the translator.

    Like CloudFormation, it passes every parameter's value, as a string: those given, the rest at
    their defaults.
    """
    template = load_template(template_path)
    values = [_parameter_values(template, given) for given in combinations]
    result = subprocess.run(
        [str(tool_path("python")), str(HERE / "sam_transform.py"), str(template_path), json.dumps(values)],
        cwd=ROOT,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sam_transform.py failed ({result.returncode}):\n{result.stderr}")
    return [
        outcome["template"] if "template" in outcome else TransformRejected(outcome["rejected"])
        for outcome in json.loads(result.stdout)
    ]


def _parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    values = {name: str(spec["Default"]) for name, spec in template.get("Parameters", {}).items() if "Default" in spec}
    return {**values, **given}


def _value(expression: Any, parameters: dict[str, str]) -> Any:
    if isinstance(expression, dict) and set(expression) == {"Ref"}:
        return parameters[expression["Ref"]]
    if isinstance(expression, dict) and set(expression) == {"Fn::Join"}:
        # A CommaDelimitedList joined: its value as given, split at the commas and joined again.
        separator, listed = expression["Fn::Join"]
        return str(separator).join(str(_value(listed, parameters)).split(","))
    if isinstance(expression, (dict, list)):
        raise ValueError(f"not evaluable in a condition here: {expression}")
    return str(expression)


def _evaluate(expression: Any, conditions: dict[str, Any], parameters: dict[str, str]) -> bool:
    ((function, arguments),) = expression.items()
    if function == "Condition":
        return _evaluate(conditions[arguments], conditions, parameters)
    if function == "Fn::Equals":
        left, right = arguments
        return _value(left, parameters) == _value(right, parameters)
    if function == "Fn::Not":
        (inner,) = arguments
        return not _evaluate(inner, conditions, parameters)
    if function == "Fn::And":
        return all(_evaluate(inner, conditions, parameters) for inner in arguments)
    if function == "Fn::Or":
        return any(_evaluate(inner, conditions, parameters) for inner in arguments)
    raise ValueError(f"unknown condition function {function}")


def _pick(node: Any, truth: dict[str, bool]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, if_true, if_false = node["Fn::If"]
            return _pick(if_true if truth[name] else if_false, truth)
        picked = {key: _pick(value, truth) for key, value in node.items()}
        return {key: value for key, value in picked.items() if value != NO_VALUE}
    if isinstance(node, list):
        return [item for item in (_pick(value, truth) for value in node) if item != NO_VALUE]
    return node


def resolve_conditions(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """`template` as CloudFormation sees it once `given` (other parameters at their defaults) decided its conditions."""
    parameters = _parameter_values(template, given)
    conditions = template.get("Conditions", {})
    truth = {name: _evaluate(expression, conditions, parameters) for name, expression in conditions.items()}
    kept = {
        section: {
            name: body for name, body in template.get(section, {}).items() if truth.get(body.get("Condition"), True)
        }
        for section in ("Resources", "Outputs")
    }
    return _pick({**template, **kept}, truth)
