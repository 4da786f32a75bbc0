"""Session fixtures for the container tests (`pytest -m docker`).

Nothing here skips: if the engine cannot start or an image cannot be built, the tests fail loudly.
"""

from __future__ import annotations

import threading

import pytest
from dockerlib import build_image, docker_setup


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/docker/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_env() -> dict[str, str]:
    """A running engine and a base image; VIGIL_DOCKER / VIGIL_COMPOSE / VIGIL_BASE_IMAGE."""
    try:
        setup = docker_setup()
    except Exception as exc:  # fail, never skip: CI must not pass without containers
        pytest.fail(f"Docker is not usable: {exc}", pytrace=False)
    return setup


@pytest.fixture(scope="session")
def service_image(docker_env: dict[str, str]):
    """`service_image(name)` -> tag of the freshly built services/<name> image (built once per session)."""
    built: dict[str, str] = {}
    lock = threading.Lock()

    def get(service: str) -> str:
        with lock:
            if service not in built:
                try:
                    built[service] = build_image(docker_env, service)
                except Exception as exc:
                    pytest.fail(f"image for {service} did not build: {exc}", pytrace=False)
            return built[service]

    return get
