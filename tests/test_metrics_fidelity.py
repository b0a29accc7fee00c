from __future__ import annotations

import json
import math

import pytest

from pgscore.metrics.fidelity import (
    UNDETERMINED,
    base_code,
    language_fidelity,
    load_detector,
    same_language,
)
from pgscore.paths import data_dir

KNOWN = {
    "de": "Wie kann ich meine Zeit besser einteilen, wenn ich neben dem Studium noch arbeite?",
    "id": "Bagaimana cara saya mengatur waktu dengan lebih baik jika saya bekerja sambil kuliah?",
    "ja": "大学に通いながら働いている場合、どうすれば時間をうまく管理できますか？",
    "en": "How can I manage my time better if I work while studying at university?",
    "es": "¿Cómo puedo organizar mejor mi tiempo si trabajo mientras estudio en la universidad?",
    "ar": "كيف يمكنني تنظيم وقتي بشكل أفضل إذا كنت أعمل أثناء الدراسة في الجامعة؟",
}


@pytest.fixture(scope="module")
def langid_detector():
    return load_detector("langid")


def test_detects_known_languages(langid_detector):
    got = langid_detector.detect(list(KNOWN.values()))
    assert got == list(KNOWN.keys())


def test_english_answers_to_indonesian_prompts_show_low_fidelity(langid_detector):
    prompts = [
        "Jelaskan perbedaan antara energi terbarukan dan energi tidak terbarukan.",
        "Bagaimana cara membuat nasi goreng yang enak di rumah?",
        "Apa manfaat membaca buku setiap hari bagi anak-anak?",
        "Tuliskan surat lamaran kerja singkat untuk posisi guru bahasa Inggris.",
    ]
    responses = [
        "Renewable energy comes from sources that are naturally replenished, such as sunlight and wind.",
        "Cook the rice a day ahead, then fry it with garlic, shallots, sweet soy sauce and an egg.",
        "Membaca setiap hari memperluas kosakata anak dan melatih konsentrasi mereka.",
        "Dear hiring manager, I am writing to apply for the English teacher position at your school.",
    ]
    p = langid_detector.detect(prompts)
    r = langid_detector.detect(responses)
    assert language_fidelity(p, "id") == 1.0
    assert r == ["en", "en", "id", "en"]
    assert language_fidelity(r, "id") == pytest.approx(0.25)


def test_short_or_letterless_texts_are_undetermined_and_excluded(langid_detector):
    got = langid_detector.detect(["42", "", "f(2) = 37", "Der Hund schläft im Garten."])
    assert got[:3] == [UNDETERMINED] * 3 and got[3] == "de"
    assert language_fidelity(got, "de") == 1.0
    assert math.isnan(language_fidelity([UNDETERMINED, None], "de"))


def test_same_language_rules():
    assert same_language("id", "id") and same_language("ms", "id")  # detector confusion, same macrolanguage
    assert same_language("de", "de-DE") and same_language("tl", "fil")
    assert not same_language("en", "id") and not same_language(None, "id") and not same_language("und", "de")
    assert base_code("ind") == "id" and base_code("zh-Hans") == "zh"


def test_vicuna_prompts_are_mostly_their_language(langid_detector):
    root = data_dir(required=False)
    if root is None or not (root / "vicuna80_multilingual_sift").is_dir():
        pytest.skip("offline data not available")
    for lang in ("de", "ja", "id"):
        rows = [json.loads(line)["text"] for line in open(root / "vicuna80_multilingual_sift" / f"questions_{lang}.jsonl")]
        assert language_fidelity(langid_detector.detect(rows), lang) >= 0.95


def test_unknown_detector_is_a_user_error():
    from pgscore.errors import PgScoreError

    with pytest.raises(PgScoreError, match="unknown language detector"):
        load_detector("cld9")


def test_langid_model_parts_cached_once_and_same_identifier(tmp_path, monkeypatch):
    from langid.langid import LanguageIdentifier, model

    import pgscore.langid as lid

    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path))
    texts = ["Das ist ein kleiner deutscher Satz über Äpfel und Birnen.", "これは日本語の文章です。とても良い天気ですね。",
             "Ini adalah kalimat pendek dalam bahasa Indonesia yang cukup panjang."]
    ref = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    built = lid._cached_identifier(LanguageIdentifier, model)  # from the wheel's string, then cached
    (cached,) = (tmp_path / "langid").glob("*.pkl")
    monkeypatch.setattr(LanguageIdentifier, "from_modelstring", classmethod(lambda *a, **k: 1 / 0))
    again = lid._cached_identifier(LanguageIdentifier, model)  # from the cache: the string is not read
    for t in texts:
        assert again.rank(t) == built.rank(t) == ref.rank(t)
    monkeypatch.undo()
    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path))
    cached.write_bytes(b"damaged")
    assert lid._cached_identifier(LanguageIdentifier, model).classify(texts[0])[0] == "de"
