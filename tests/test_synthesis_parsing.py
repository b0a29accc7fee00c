"""Lenient parsing of teacher output: every malformed case is a reasoned failure, never an exception."""

from __future__ import annotations

import pytest

from pgscore.synthesis.parsing import parse_completion_pair, parse_json_pair, parse_plain


@pytest.mark.parametrize(
    "text",
    [
        '{"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr."}',
        '```json\n{"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr."}\n```',
        '```\n{"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr."}\n```\nHope this helps!',
        'Sure! Here is a new example:\n{"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr."} Enjoy.',
        "{'prompt': 'Wie spät ist es?', 'response': 'Es ist drei Uhr.'}",
        '{"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr.",}',
        '{\n  "Prompt": "Wie spät ist es?",\n  "Response": "Es ist drei Uhr."\n}',
        '{"question": "Wie spät ist es?", "answer": "Es ist drei Uhr."}',
        '{"prompt": "  Wie spät ist es?  ", "response": "Es ist drei Uhr.\n"}',
        # a first object without the fields, then the real one
        '{"note": "example"} {"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr."}',
        # braces inside strings do not confuse the balance scan
        'x {"prompt": "Wie spät ist es?", "response": "Es ist drei Uhr."} {"prompt": "a {b"}',
    ],
)
def test_json_pair_lenient_variants(text):
    p = parse_json_pair(text)
    assert p.ok, p.error
    assert (p.prompt, p.response) == ("Wie spät ist es?", "Es ist drei Uhr.")


def test_json_pair_raw_newline_inside_string_and_braces_in_text():
    p = parse_json_pair('{"prompt": "Schreib {x}:\nzwei Zeilen", "response": "a\nb"}')
    assert p.ok and p.prompt == "Schreib {x}:\nzwei Zeilen" and p.response == "a\nb"


def test_json_pair_number_response_is_text():
    p = parse_json_pair('{"prompt": "2 + 2?", "response": 4}')
    assert p.ok and p.response == "4"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty_output"),
        ("   \n ", "empty_output"),
        (None, "empty_output"),
        ("Ich kann das leider nicht.", "no_json_object"),
        ('{"prompt": "Wie spät ist es?", "response": "Es ist', "truncated_json"),
        ('```json\n{"prompt": "Wie spät', "truncated_json"),
        ('{"prompt": "Wie spät ist es?"}', "missing_field:response"),
        ('{"response": "Es ist drei Uhr."}', "missing_field:prompt"),
        ('{"prompt": "", "response": "Es ist drei Uhr."}', "empty_field:prompt"),
        ('{"prompt": "Frage?", "response": "   "}', "empty_field:response"),
        ('{"prompt": ["a", "b"], "response": "x"}', "invalid_field:prompt"),
        ('{"prompt": "Frage?", "response": null}', "missing_field:response"),
        ('{"prompt": "Frage?", "response": true}', "invalid_field:response"),
        ("{prompt: Frage, response: Antwort}", "invalid_json"),
        ("[1, 2, 3]", "no_json_object"),
    ],
)
def test_json_pair_failures_have_reasons(text, reason):
    p = parse_json_pair(text)
    assert not p.ok
    assert p.error == reason
    assert p.prompt is None and p.response is None


def test_completion_pair_cuts_at_next_block():
    text = " Wie heißt du?\nResponse: Ich heiße Lena.\nPrompt: Noch eine Frage?\nResponse: Ja."
    p = parse_completion_pair(text, "Response:", ("\nPrompt:",))
    assert (p.prompt, p.response) == ("Wie heißt du?", "Ich heiße Lena.")


def test_completion_pair_multiline_response_and_translate_label():
    text = " Wie viel kostet das?\nAnswer: Das kostet\nzwei Euro.\n\nEnglish: next"
    p = parse_completion_pair(text, "Answer:", ("\nEnglish:",))
    assert (p.prompt, p.response) == ("Wie viel kostet das?", "Das kostet\nzwei Euro.")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty_output"),
        (" Wie heißt du? Ich heiße Lena.", "missing_label:Response"),
        ("\nResponse: Ich heiße Lena.", "empty_field:prompt"),
        (" Wie heißt du?\nResponse:   \nPrompt: x", "empty_field:response"),
    ],
)
def test_completion_pair_failures(text, reason):
    p = parse_completion_pair(text, "Response:", ("\nPrompt:",))
    assert p.error == reason


def test_plain_response():
    assert parse_plain("  Es ist drei Uhr.\n").response == "Es ist drei Uhr."
    assert parse_plain(" Gut.\nPrompt: weiter", ("\nPrompt:",)).response == "Gut."
    assert parse_plain("").error == "empty_output"
    assert parse_plain("\nPrompt: x", ("\nPrompt:",)).error == "empty_field:response"


@pytest.mark.parametrize("text", ['{{"prompt": "Frage?"}}', '{{"a"}}', "{[1]: 2}", '{"prompt": {"x"}, "response": 1}x'])
def test_python_literals_that_cannot_be_built_are_failures_not_crashes(text):
    # seen from SmolLM2 under the paper preset: a set of a set made ast.literal_eval raise TypeError
    p = parse_json_pair(text)
    assert not p.ok and p.error in ("invalid_json", "invalid_field:prompt", "missing_field:prompt")
    assert parse_json_pair(text + ' {"prompt": "Frage?", "response": "Antwort."}').ok  # a later object still counts


def test_absurd_nesting_is_a_failure_not_a_crash():
    deep = '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "response": "x"}'
    p = parse_json_pair(deep)
    assert not p.ok
