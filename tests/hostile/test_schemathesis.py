"""schemathesis against the project's own OpenAPI schema (/api/v1/schema/), in process through the
WSGI app: every operation with valid (positive) and invalid (negative) data, with a read token and a
write token, and stateful runs that follow the schema's links (a write's 202 -> its batch status).
A response >= 500 fails the test; nothing else is asserted about the answers here.

schemathesis' pytest plugin does not run under pytest 9 (see tests/timeseries/api/test_schema.py), so
each operation is driven through schemathesis' Python API: its Hypothesis strategy, called in process."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import HealthCheck
from schemathesis.generation.modes import GenerationMode

from ingestion.loader import ingest_table
from tests.helpers import api_schema_in_process, bar
from timeseries.datasets import DATASETS

pytestmark = pytest.mark.django_db

EXAMPLES = hypothesis.settings(
    max_examples=8, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture
def schema(db):
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAPL", "MSFT") for m in range(10)])
    with api_schema_in_process() as loaded:
        yield loaded


def dataset_of(rows: list) -> str | None:
    """The dataset whose columns the first row has (its required ones, and no others)."""
    row = rows[0] if rows and isinstance(rows[0], dict) else {}
    for name, spec in DATASETS.items():
        columns = {spec.input_name(c.name) for c in spec.columns} | {"known_at"}  # as the write API names them
        if set(spec.input_required_columns) <= set(row) <= columns:
            return name
    return None


def operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def no_server_error(case, response, headers) -> None:
    assert response.status_code < 500, (
        f"{case.as_curl_command(headers)} -> {response.status_code}: {response.text[:500]}"
    )


def test_the_schema_offers_the_write_api_with_a_link_to_its_batch_status(schema):
    labels = {op.label for op in operations(schema)}
    assert {
        "POST /api/v1/ingest/{dataset}/",
        "GET /api/v1/ingest/batches/{batch_id}/",
        "POST /api/v1/asof-join/",
    } <= labels
    raw = schema.raw_schema["paths"]["/api/v1/ingest/{dataset}/"]["post"]["responses"]["202"]
    assert raw["links"]["BatchStatus"]["operationId"] == "ingest_batches_retrieve"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("scope", ["read", "write"])
def test_no_operation_answers_a_server_error(schema, read_key, write_key, scope, mode):
    headers = {"Authorization": f"Bearer {read_key if scope == 'read' else write_key}"}
    statuses: dict[int, int] = {}
    for operation in operations(schema):

        @EXAMPLES
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call(headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            no_server_error(case, response, headers)

        run()
    assert any(200 <= code < 300 for code in statuses) and any(400 <= code < 500 for code in statuses), statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_stateful_runs_following_the_links_never_answer_a_server_error(schema, write_key, mode):
    schema.config.generation.update(modes=[mode])
    headers = {"Authorization": f"Bearer {write_key}"}
    followed = []

    class Machine(schema.as_state_machine()):
        def before_call(self, case):
            # the schema cannot tie the path's dataset to the rows' columns: pair them here, as a client would
            if case.operation.label == "POST /api/v1/ingest/{dataset}/" and isinstance(case.body, list):
                dataset = dataset_of(case.body)
                if dataset and mode == GenerationMode.POSITIVE:
                    case.path_parameters["dataset"] = dataset

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            followed.append((case.operation.label, response.status_code))
            no_server_error(case, response, headers)

    # 30 runs: with seven datasets' row shapes, fewer of 15 runs drew a valid write (a corporate action is
    # never valid here: no security is loaded to resolve it against)
    Machine.run(settings=hypothesis.settings(EXAMPLES, max_examples=30, stateful_step_count=4))
    assert followed
    if mode == GenerationMode.POSITIVE:  # valid writes are accepted, and their batch is looked up through the link
        assert ("POST /api/v1/ingest/{dataset}/", 202) in followed, followed
        assert ("GET /api/v1/ingest/batches/{batch_id}/", 200) in followed, followed
