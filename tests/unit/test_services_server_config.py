"""The serving settings of specd's BentoML services: access log and hot-path tracing off unless asked
for, and the uvicorn that BentoML's worker configures (no `loop`/`http` given) running uvloop + httptools."""

from __future__ import annotations

import pytest

from bentos import bentoml_fixes, bentoml_lean


@pytest.fixture(autouse=True)
def _restore_untraced():
    before = bentoml_lean._untraced
    yield
    bentoml_lean.set_untraced(before)


def test_access_log_and_hot_path_tracing_are_off_by_default():
    config = bentoml_fixes.serving_config(["/predict", "/feedback"], {})
    assert config["logging"]["access"]["enabled"] is False
    assert config["tracing"]["excluded_urls"] == ["/predict$", "/feedback$"]
    assert bentoml_lean._untraced == {"/predict", "/feedback"}
    assert config["traffic"] == {"timeout": 60}  # no max_concurrency: no middleware for it
    assert "ssl" not in config


def test_access_log_and_tracing_on_when_configured():
    config = bentoml_fixes.serving_config(["/predict"], {"SPECD_ACCESS_LOG": "1", "SPECD_TRACE_REQUESTS": "1"})
    assert config["logging"]["access"]["enabled"] is True
    assert config["tracing"]["excluded_urls"] == [] and bentoml_lean._untraced == frozenset()


def test_uvicorn_as_bentoml_configures_it_runs_uvloop_and_httptools():
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from bentos.worker import server_stack

    config = uvicorn.Config(app=lambda scope, receive, send: None, log_config=None, workers=1, server_header=False)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    loop = config.get_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop")

        async def stack() -> dict[str, str]:
            return server_stack()

        assert loop.run_until_complete(stack()) == {"loop": "uvloop", "http": "httptools"}
    finally:
        loop.close()
