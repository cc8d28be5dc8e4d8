"""Fixtures for the chat page, the API and the admin: a tiny random model serves every answer."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from console.conversations import api_keys
from console.knowledge.indexing import index_document, register_file
from console.knowledge.models import Collection
from console.training.adapters import forget_active_adapter
from console.training.models import TrainingRun
from tests.tiny_models import build_tiny_adapter, build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ONCALL = """# On-call rotation

## Paging
The primary on-call engineer is paged through PagerDuty and must acknowledge a page within 5 minutes.
Escalation to the secondary on-call engineer happens after 15 minutes without an acknowledgement.
"""
EXPENSES = """# Expense policy

## Meals
Meals while travelling are reimbursed up to 60 euros per day. Alcohol is never reimbursed.
"""
VPN = """Laptop and VPN setup

Install WireGuard from the self-service portal and import the profile named northwind-office.
"""
ONCALL_QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"
UNRELATED_QUESTION = "What is the airspeed velocity of an unladen swallow?"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    return build_tiny_adapter(tiny_model, tmp_path_factory.mktemp("tiny") / "adapter")


@pytest.fixture(autouse=True)
def tiny_generation(settings, tiny_model):
    """Answers come from the tiny model: greedy, short, local; no adapter is cached across tests."""
    settings.GENERATOR = "local"
    settings.BASE_MODEL = str(tiny_model)
    settings.GENERATION_MAX_NEW_TOKENS = 12
    settings.GENERATION_TEMPERATURE = 0
    forget_active_adapter()
    yield
    forget_active_adapter()


@pytest.fixture
def handbook(db) -> Collection:
    """An indexed collection of three small documents."""
    collection = Collection.objects.create(name="Handbook", slug="handbook")
    for source, text in [("oncall.md", ONCALL), ("expenses.md", EXPENSES), ("vpn.txt", VPN)]:
        index_document(register_file(collection, source, text.encode()).document.pk)
    return collection


@pytest.fixture
def trained_adapter(db, tiny_adapter) -> TrainingRun:
    return TrainingRun.objects.create(
        name="tone-v1",
        status=TrainingRun.Status.SUCCEEDED,
        adapter_path=str(tiny_adapter),
        metrics={"promoted": True},  # it passed the evaluation gate
    )


@pytest.fixture
def api_key(db) -> str:
    return api_keys.create_api_key("tests")[1]


@pytest.fixture
def model_server_down(settings):
    """GENERATOR=openai pointed at a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.GENERATOR = "openai"
    settings.LLM_API_URL = f"http://127.0.0.1:{port}/v1"
    settings.LLM_TIMEOUT = 2
