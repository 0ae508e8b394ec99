"""Fixtures shared by the data tests."""

import pytest

from fetch_mirror import start_server


@pytest.fixture()
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "www"``."""
    httpd = start_server(tmp_path / "www")
    yield httpd
    httpd.shutdown()
    httpd.server_close()
