import os

import pytest

from tests.records.pg_server import PostgresServer, binaries


@pytest.fixture(scope="module")
def pg():
    """A real PostgreSQL server of its own for the module (skipped without the OS package, except in
    CI, where RIG_REQUIRE_POSTGRES=1 makes a missing server a failure)."""
    if binaries() is None:
        why = "PostgreSQL not installed: apt-get install -y postgresql"
        if os.environ.get("RIG_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    server = PostgresServer()
    yield server
    server.close()
