"""lighteval's multiple-choice formulation (MCF), written out so pgscore builds the same prompt text.

A row becomes (lighteval ``get_mcq_prompt_function`` with ``MCFFormulation()``)::

    {Question word}{colon}{space}{Question}
    {space}A{full stop}{space}{Option A}
    ...
    {Answer word}{colon}

and the continuations scored are ``{space}A``, ``{space}B``, ... (the letters; accuracy = argmax of their
log-likelihoods, no normalisation, as lighteval's ``get_metrics_for_formulation`` picks for MCF).
Question and options are capitalised and their final ``? . , :`` replaced by the language's own mark.
The words and punctuation are lighteval 0.13's ``TRANSLATION_LITERALS`` for the languages pgscore
evaluates; a language lighteval has no words for (cy, ko, ms, my, yo) falls back to English words with
its own punctuation, and ``literals_source`` says so. tests/test_eval_mcf.py checks every entry against
lighteval itself when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase
from typing import Sequence


@dataclass(frozen=True)
class Literals:
    question_word: str
    answer: str
    colon: str = ":"
    full_stop: str = "."
    question_mark: str = "?"
    comma: str = ","
    sentence_space: str = " "


_LATIN = dict(colon=":", full_stop=".", question_mark="?", comma=",", sentence_space=" ")
_CJK_JA = dict(colon="：", full_stop="。", question_mark="？", comma="、", sentence_space="")
_CJK_ZH = dict(colon="：", full_stop="。", question_mark="？", comma="，", sentence_space="")

# ISO 639-1 -> lighteval Language, as in lighteval.utils.language (tl = TAGALOG)
LIGHTEVAL_LANGUAGE = {
    "ar": "ARABIC", "bn": "BENGALI", "cs": "CZECH", "cy": "WELSH", "de": "GERMAN", "en": "ENGLISH",
    "es": "SPANISH", "fr": "FRENCH", "hi": "HINDI", "id": "INDONESIAN", "it": "ITALIAN", "ja": "JAPANESE",
    "ko": "KOREAN", "ms": "MALAY", "my": "BURMESE", "pt": "PORTUGUESE", "sw": "SWAHILI", "tl": "TAGALOG",
    "vi": "VIETNAMESE", "yo": "YORUBA", "zh": "CHINESE", "el": "GREEK", "fa": "PERSIAN", "he": "HEBREW",
    "nl": "DUTCH", "pl": "POLISH", "ro": "ROMANIAN", "ru": "RUSSIAN", "tr": "TURKISH", "uk": "UKRAINIAN",
    "th": "THAI", "te": "TELUGU",
}

LITERALS: dict[str, Literals] = {
    "ar": Literals("سؤال", "إجابة", colon=":", full_stop=".", question_mark="؟", comma="،", sentence_space=" "),
    "bn": Literals("প্রশ্ন", "উত্তর", colon=":", full_stop="।", question_mark="?", comma=",", sentence_space=" "),
    "cs": Literals("otázka", "odpověď", **_LATIN),
    "de": Literals("frage", "antwort", **_LATIN),
    "en": Literals("question", "answer", **_LATIN),
    "es": Literals("pregunta", "respuesta", **_LATIN),
    "fr": Literals("question", "réponse", **_LATIN),
    "hi": Literals("सवाल", "उत्तर", colon=":", full_stop="।", question_mark="?", comma=",", sentence_space=" "),
    "id": Literals("pertanyaan", "jawaban", **_LATIN),
    "it": Literals("domanda", "risposta", **_LATIN),
    "ja": Literals("質問", "回答", **_CJK_JA),
    "pt": Literals("pergunta", "resposta", **_LATIN),
    "sw": Literals("swali", "jibu", **_LATIN),
    "tl": Literals("tanong", "sagot", **_LATIN),
    "vi": Literals("câu hỏi", "trả lời", **_LATIN),
    "zh": Literals("问题", "答案", **_CJK_ZH),
}
# lighteval has punctuation but no question/answer words for these: English words (flagged)
NO_WORDS = ("cy", "ko", "ms", "my", "yo")


def literals_for(language: str) -> tuple[Literals, str]:
    """The literals for a language and where they come from (``lighteval`` or a fallback reason)."""
    lang = language.split("-")[0].lower()
    if lang in LITERALS:
        return LITERALS[lang], "lighteval"
    return LITERALS["en"], f"lighteval has no question/answer words for {lang!r}: English words used"


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def fix_ending_punct(text: str, lit: Literals) -> str:
    """Strip trailing space and swap a final ``? . , :`` for the language's mark (lighteval's rule)."""
    text = text.rstrip()
    if not text:
        return text
    for mark, repl in (("?", lit.question_mark), (".", lit.full_stop), (",", lit.comma), (":", lit.colon)):
        if text.endswith(mark):
            return text[:-1] + repl
    return text


def mcf_prompt(question: str, choices: Sequence[str], language: str,
               instruction: str | None = None) -> tuple[str, list[str]]:
    """(query, continuations) of lighteval's MCF for one row: the letters are what gets scored."""
    lit, _ = literals_for(language)
    q = capitalize(fix_ending_punct(str(question), lit))
    answers = [capitalize(fix_ending_punct(str(c), lit)) for c in choices]
    sp = lit.sentence_space
    options = "\n".join(f"{sp}{ascii_uppercase[i]}{lit.full_stop}{sp}{a}" for i, a in enumerate(answers))
    head = f"{instruction}\n" if instruction else ""
    query = (f"{head}{capitalize(lit.question_word)}{lit.colon}{sp}{q}\n{options}\n"
             f"{capitalize(lit.answer)}{lit.colon}")
    return query, [f"{sp}{ascii_uppercase[i]}" for i in range(len(answers))]
