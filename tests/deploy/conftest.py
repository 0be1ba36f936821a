"""Fixtures for the deployable artefacts: template.yaml, the Dockerfile and the tools that check them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.cloudformation import load_template
from tests.tools import tool_path


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def tool() -> Any:
    return tool_path
