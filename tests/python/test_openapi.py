"""The management API against its own OpenAPI description, with schemathesis: every
operation described at /api/openapi.json of a fresh broker is called with generated
requests (basic auth guest:guest), and every answer must be no 500 (nor another 5xx the
operation does not describe), a status code the description lists for the operation, the content type and body schema it describes, and a
401 without (or with wrong) credentials where it declares basic auth.

Generic: it iterates over whatever the description holds. Bounded: a few examples per
operation and mode, no shrinking, derandomized (the same requests every run).

Excluded (they would break the rest of the run, not the API): write operations (anything
but GET/HEAD) whose path names the caller `guest` or the default vhost `/` — deleting or
re-tagging the user the run authenticates as, or deleting the vhost everything lives in."""

from __future__ import annotations

import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from broker import Broker, free_port

pytestmark = pytest.mark.timeout(300)

GUEST = ("guest", "guest")


def no_undescribed_server_error(ctx, response, case):
    """No 500, and no other 5xx unless the operation describes it: RabbitMQ's health checks
    answer 503 when they fail, and a node that does not coordinate a group says so with 503."""
    code = response.status_code
    if code >= 500:
        described = case.operation.definition.raw.get("responses", {})
        if code == 500 or str(code) not in described:
            raise AssertionError(f"server error {code} from {case.operation.label}: "
                                 f"{response.text[:300]}")
    return None

EXAMPLES = 15
CHECKS = [
    no_undescribed_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
PROTECTED = {"guest", "/"}


@pytest.fixture
def api_broker(broker_factory) -> Broker:
    port = free_port()
    # The run sends many wrong credentials (the auth probes); the failed-login limiter
    # would otherwise start refusing the right ones too.
    b = broker_factory({"management.listen": f"127.0.0.1:{port}",
                        "auth.failed_login.free_failures": 1_000_000})
    b.http = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(b.http + "/api/openapi.json", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "HTTP listener never answered"
        time.sleep(0.2)
    return b


def destructive_to_the_run(case) -> bool:
    # RabbitMQ's `columns=` trims each listed object to the named keys; the response
    # schemas describe whole objects, so cases with it are left out (docs/operations.md).
    if "columns" in (case.query or {}):
        return True
    if case.method.upper() in ("GET", "HEAD"):
        return False
    return any(str(v) in PROTECTED for v in (case.path_parameters or {}).values())


def run_operation(op, mode: GenerationMode, base_url: str, session: requests.Session,
                  calls: dict):
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def check(case):
        if destructive_to_the_run(case):
            return
        calls[(op.label, mode.value)] = calls.get((op.label, mode.value), 0) + 1
        # `auth=` (not the session's) so the auth check knows the credentials are explicit.
        case.call_and_validate(base_url=base_url, session=session, checks=CHECKS,
                               auth=GUEST, timeout=10)

    check()


def test_api_conforms_to_its_description(api_broker):
    b = api_broker
    schema = schemathesis.openapi.from_url(b.http + "/api/openapi.json", auth=GUEST,
                                           timeout=10)
    session = requests.Session()
    operations = []
    for result in schema.get_all_operations():
        operations.append(result.ok())
    assert operations, "the description holds no operation"
    failures = []
    calls: dict = {}
    t0 = time.monotonic()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                run_operation(op, mode, b.http, session, calls)
            except Unsatisfiable:
                pass  # nothing to negate (e.g. no parameters)
            # schemathesis raises a FailureGroup (a BaseExceptionGroup, not an Exception).
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - reported below
                failures.append(f"--- {op.label} ({mode.value}) ---\n{e}")
    elapsed = time.monotonic() - t0
    print(f"schemathesis: {len(operations)} operations, {sum(calls.values())} requests "
          f"in {elapsed:.1f}s")
    for (label, mode), n in sorted(calls.items()):
        print(f"  {label} [{mode}]: {n}")
    assert not failures, "\n\n".join(failures)
