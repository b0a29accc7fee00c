"""pgscore push: the dry-run bundle loads with `datasets`, the card's metadata and intervals, license rules,
and a real upload through huggingface_hub to a loopback stand-in for the Hub HTTP API (no token leaks)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pgscore.errors import PgScoreError
from pgscore.hub import build_bundle, dataset_license, size_category, source_license, source_table, with_interval

TOKEN = "hf_pgscoreTESTtoken_4f1c9a7e2b"


# ------------------------------------------------------------------------------------ a results folder


def _results(tmp: Path, nc: bool = False, students: bool = False) -> Path:
    """A small results folder in the documented schema; seed ids carry their source (seed.build.row_id)."""
    res = tmp / "res"
    (res / "seed").mkdir(parents=True)
    seed = pd.DataFrame({
        "id": ["pgscore-pairs:de:aa", "pgscore-pairs:de:bb", "pgscore-pairs:id:cc", "llmzoo:de:dd"],
        "language": ["de", "de", "id", "de"], "prompt": ["Was ist 2+2?", "Nenne eine Farbe.", "Apa itu air?", "Hallo?"],
        "response": ["4", "Blau.", "Air adalah cairan.", None], "source": ["pgscore-pairs"] * 3 + ["llmzoo"],
        "task": [None] * 4, "prompt_en": [None] * 4})
    seed.to_parquet(res / "seed" / "seed.parquet")
    pd.DataFrame({"id": ["gsm8k:en:ee"], "language": ["en"], "prompt": ["What is 3+4?"], "source": ["gsm8k"]}).to_parquet(
        res / "seed" / "english_pool.parquet")
    rows = []
    for t, model in (("smollm2-135m", "tiny:smollm2-135m"), ("gemma3-270m", "tiny:gemma3-270m")):
        for lang in ("de", "id"):
            for i, method in enumerate(("generate", "translate", "respond", "generate")):
                src = {"translate": "gsm8k:en:ee", "respond": ("llmzoo:de:dd" if nc and lang == "de" else None)}.get(method)
                seeds = ["pgscore-pairs:de:aa", "pgscore-pairs:de:bb"] if lang == "de" else ["pgscore-pairs:id:cc"]
                rows.append({"id": f"{t}/{lang}/t0/{method}/{i:04d}", "teacher": t, "model": model, "language": lang,
                             "method": method, "trial": 0, "prompt": f"Frage {i} ({t}, {lang})",
                             "response": f"Antwort {i}", "status": "failed" if i == 3 and t == "gemma3-270m" else "ok",
                             "error": "no_json_object" if i == 3 and t == "gemma3-270m" else None, "raw_output": "x",
                             "seed_ids": seeds, "source_id": src,
                             "params": json.dumps({"temperature": 0.8, "top_p": 0.9, "max_tokens": 64, "seed": 7,
                                                   "stop": []}), "prompt_tokens": 10, "completion_tokens": 5,
                             "task_type": None, "rendering": "chat", "finish_reason": "stop"})
    pd.DataFrame(rows).to_parquet(res / "synthetic.parquet")
    pd.DataFrame([{"teacher": t, "language": lang, "trial": 0, "method": "all", "n": 3, "prompt_diversity": 0.25,
                   "response_diversity": 0.3, "perplexity": 12.5, "judge_score": 3.5, "prompt_len": 9.0,
                   "response_len": 4.0} for t in ("smollm2-135m", "gemma3-270m") for lang in ("de", "id")]
                 ).to_parquet(res / "metrics.parquet")
    pd.DataFrame([{"teacher": "smollm2-135m", "language": "de", "intrinsic_z": 0.5, "pgr": 0.4, "pg_score": 0.45,
                   "pg_score_low": 0.31, "pg_score_high": 0.58, "pgr_low": 0.2, "pgr_high": 0.6},
                  {"teacher": "gemma3-270m", "language": "de", "intrinsic_z": -0.5, "pgr": float("nan"),
                   "pg_score": float("nan")}]).to_parquet(res / "scored.parquet")
    srcs = [{"name": "pgscore-pairs", "path": "builtin"}]
    if nc:
        srcs.append({"name": "llmzoo", "path": "{data}/llmzoo_multilingual100/{lang}.jsonl", "kind": "prompts"})
    exp = {"name": "pushtest", "languages": ["de", "id"],
           "seed": {"sources": srcs, "english_sources": [{"name": "gsm8k", "preset": "gsm8k"}]},
           "synthesis": {"k_shot": 2, "trials": 1, "examples_per_cell": 4}}
    (res / "experiment.yaml").write_text(yaml.safe_dump(exp))
    if students:
        from safetensors.numpy import save_file
        import numpy as np

        sdir = res / "students" / "smollm2-135m-de-0"
        sdir.mkdir(parents=True)
        save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(sdir / "model.safetensors"))
        (sdir / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (sdir / "pgscore_student.json").write_text(json.dumps({
            "base": "tiny:smollm2-135m", "teacher": "smollm2-135m", "language": "de", "methods": ["generate"],
            "n_examples": 3, "steps": 4, "final_loss": 1.25, "hyperparameters": {"learning_rate": 1e-4}}))
        (sdir / "README.md").write_text("old card")
        pd.DataFrame([{"teacher": "smollm2-135m", "language": "de", "trial": 0, "student": "smollm2-135m",
                       "student_model": f"hf:{sdir}", "student_score": 0.31, "base_score": 0.25,
                       "reference_score": 0.4, "pgr": 0.4, "pgr_low": 0.1, "pgr_high": 0.7, "pgr_note": ""}]
                     ).to_parquet(res / "extrinsic.parquet")
    return res


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    _, meta, body = text.split("---", 2)
    return yaml.safe_load(meta), body


# ------------------------------------------------------------------------------------ pure rules


def test_license_rules():
    assert source_license("vicuna80", "{data}/vicuna80_multilingual_sift/x.jsonl", "vicuna80") == "apache-2.0"
    assert source_license("mine", "{data}/llmzoo_multilingual100/de.jsonl") == "cc-by-nc-4.0"
    assert source_license("sea", "{data}/seahelm_prompts/id_sea_mt_bench.jsonl") == "cc-by-nc-sa-4.0"
    assert source_license("sea", "{data}/seahelm_prompts/id_sea_ifeval.jsonl") == "cc-by-4.0"
    assert source_license("x", "/data/mine.jsonl") == "unknown"
    assert source_license("x", "/data/mine.jsonl", overrides={"x": "cc0-1.0"}) == "cc0-1.0"
    src = pd.DataFrame([{"source": "a", "license": "apache-2.0", "rows": 3, "non_commercial": False},
                        {"source": "b", "license": "cc-by-nc-4.0", "rows": 1, "non_commercial": True}])
    assert dataset_license(src, None)[0] == "cc-by-nc-4.0"
    with pytest.raises(PgScoreError, match="non-commercial"):
        dataset_license(src, "apache-2.0")
    assert dataset_license(src.iloc[:1], None)[0] == "apache-2.0"
    assert size_category(999) == "n<1K" and size_category(1000) == "1K<n<10K"
    assert with_interval({"pg": 0.5, "pg_low": 0.3, "pg_high": 0.7}, "pg", ".2f") == "0.50 [0.30, 0.70]"
    assert with_interval({"pg": 0.5}, "pg", ".2f") == "0.50"


def test_source_table_counts_rows(tmp_path):
    res = _results(tmp_path, nc=True)
    ok = pd.read_parquet(res / "synthetic.parquet").query("status == 'ok'")
    from pgscore.hub import seed_sources_by_id

    t = source_table(ok, yaml.safe_load((res / "experiment.yaml").read_text()), by_id=seed_sources_by_id(res)).set_index("source")
    # every ok row shows pgscore pairs; translate rows use gsm8k (2 teachers x 2 languages); respond in de uses llmzoo
    assert t.loc["pgscore-pairs", "rows"] == len(ok)
    assert t.loc["gsm8k", "rows"] == 4 and t.loc["gsm8k", "license"] == "mit"
    assert t.loc["llmzoo", "rows"] == 2 and bool(t.loc["llmzoo", "non_commercial"])


# ------------------------------------------------------------------------------------ dry run


def test_dry_run_loads_with_datasets(tmp_path):
    import datasets

    res = _results(tmp_path)
    out = tmp_path / "bundle"
    b = build_bundle(res, out, "acme/pg-data")
    assert b.license == "other"  # apache-2.0 pairs + MIT gsm8k: mixed, listed in the card
    meta, body = _card(out / "dataset")
    assert set(meta["language"]) == {"de", "id"} and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["text-generation"]
    names = [c["config_name"] for c in meta["configs"]]
    assert names == ["gemma3-270m--de", "gemma3-270m--id", "smollm2-135m--de", "smollm2-135m--id"]
    for name, n_ok in zip(names, (3, 3, 4, 4)):
        ds = datasets.load_dataset(str(out / "dataset"), name, split="train")
        assert ds.num_rows == n_ok
        assert set(ds["language"]) == {name.split("--")[1]} and set(ds["teacher"]) == {name.split("--")[0]}
    # provenance and metrics with intervals where scored has them; undefined stays '-'
    assert "0.450 [0.310, 0.580]" in body and "0.400 [0.200, 0.600]" in body
    assert '"temperature": 0.8' in body and '"seed"' not in body.split("decoding parameters")[1].split("###")[0]
    assert "| gsm8k | mit | 4 | no |" in body
    line = next(x for x in body.splitlines() if x.startswith("| gemma3-270m | de |"))
    assert line.rstrip().endswith("| -0.500 | - | - |")


def test_non_commercial_flagged_and_permissive_refused(tmp_path):
    res = _results(tmp_path, nc=True)
    with pytest.raises(PgScoreError, match="refusing license 'apache-2.0'"):
        build_bundle(res, tmp_path / "b1", "acme/x", license="apache-2.0")
    b = build_bundle(res, tmp_path / "b2", "acme/x")
    meta, body = _card(tmp_path / "b2" / "dataset")
    assert b.license == meta["license"] == "cc-by-nc-4.0"
    assert "**Non-commercial:**" in body and "llmzoo: cc-by-nc-4.0" in body


def test_cli_errors(tmp_path):
    res = _results(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "pgscore", "push", str(res), "--repo", "acme/x"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "HF_TOKEN" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "pgscore", "push", str(res), "--repo", "not a repo", "--dry-run",
                        str(tmp_path / "d")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "ORG/NAME" in r.stderr


# ------------------------------------------------------------------------------------ loopback Hub


class FakeHub(BaseHTTPRequestHandler):
    """Just the endpoints create_repo and create_commit call: /api/repos/create, /api/validate-yaml (README
    metadata), /api/<type>s/<repo>/preupload/<rev> and /api/<type>s/<repo>/commit/<rev> (NDJSON)."""

    repos: dict[str, dict[str, bytes]] = {}
    auth_seen: list[bool] = []
    log: list[str] = []

    def log_message(self, fmt, *args):  # the request log, kept to grep for the token
        FakeHub.log.append(fmt % args + " " + json.dumps(dict(self.headers)))

    def _json(self, code: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        FakeHub.auth_seen.append(ok)
        if not ok:
            return self._json(401, {"error": "Invalid credentials"})
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "validate-yaml"]:  # README metadata check before a commit
            text = json.loads(body)["content"]
            try:
                meta = yaml.safe_load(text.split("---")[1]) if text.startswith("---") else {}
                assert isinstance(meta, dict)
            except Exception as exc:  # noqa: BLE001
                return self._json(400, {"errors": [{"message": str(exc)}]})
            return self._json(200, {"errors": [], "warnings": []})
        if parts[:3] == ["api", "repos", "create"]:
            p = json.loads(body)
            kind = p.get("type") or "model"
            rid = f"{p['organization']}/{p['name']}"
            FakeHub.repos.setdefault(f"{kind}:{rid}", {})
            prefix = "" if kind == "model" else f"{kind}s/"
            return self._json(200, {"url": f"http://{self.headers['Host']}/{prefix}{rid}", "name": rid})
        if parts[0] == "api" and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
            kind, rid = parts[1].rstrip("s"), f"{parts[2]}/{parts[3]}"
            files = FakeHub.repos.get(f"{kind}:{rid}")
            if files is None:
                return self._json(404, {"error": "Repository not found"})
            if parts[4] == "preupload":
                paths = [f["path"] for f in json.loads(body)["files"]]
                return self._json(200, {"files": [{"path": p, "uploadMode": "regular", "shouldIgnore": False}
                                                  for p in paths]})
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return self._json(200, {"commitUrl": f"http://{self.headers['Host']}/{rid}/commit/1", "commitOid": "1" * 40,
                                    "pullRequestUrl": None})
        return self._json(404, {"error": f"not implemented: {self.path}"})


@pytest.fixture
def fake_hub():
    FakeHub.repos, FakeHub.auth_seen, FakeHub.log = {}, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_upload_to_loopback_hub(tmp_path, fake_hub):
    res = _results(tmp_path, students=True)
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": fake_hub, "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HOME": str(tmp_path / "hfhome"), "HF_HUB_OFFLINE": "0"}
    r = subprocess.run([sys.executable, "-m", "pgscore", "push", str(res), "--repo", "acme/pg-data", "--students"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ds = FakeHub.repos["dataset:acme/pg-data"]
    assert "README.md" in ds and "data/smollm2-135m/de/train.parquet" in ds
    # the uploaded bytes are the dry-run's bytes (a dry run writes exactly what is uploaded)
    dry = tmp_path / "dry"
    build_bundle(res, dry, "acme/pg-data", students=True)
    for path, data in ds.items():
        assert (dry / "dataset" / path).read_bytes() == data, path
    model = FakeHub.repos["model:acme/pg-data-smollm2-135m-de-0"]
    assert set(model) == {"README.md", "config.json", "model.safetensors", "pgscore_student.json"}
    card = model["README.md"].decode()
    assert "datasets:\n- acme/pg-data" in card and "0.400 [0.100, 0.700]" in card and "old card" not in card
    assert all(FakeHub.auth_seen) and FakeHub.auth_seen
    # the token reaches the server in the Authorization header only, and nowhere on disk or in the output
    written = [p for p in list(tmp_path.rglob("*")) if p.is_file()]
    for p in written:
        assert TOKEN.encode() not in p.read_bytes(), p
    assert TOKEN not in r.stdout + r.stderr
    assert all(TOKEN not in line.replace(f"Bearer {TOKEN}", "") for line in FakeHub.log)


def test_upload_bad_token_is_one_line(tmp_path, fake_hub):
    res = _results(tmp_path)
    env = {**os.environ, "HF_TOKEN": "hf_wrong_secret_123", "HF_ENDPOINT": fake_hub, "HF_HOME": str(tmp_path / "h")}
    r = subprocess.run([sys.executable, "-m", "pgscore", "push", str(res), "--repo", "acme/pg-data"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "upload of dataset acme/pg-data failed" in r.stderr
    assert "Traceback" not in r.stderr and "hf_wrong_secret_123" not in r.stderr + r.stdout
