"""Tokenizer rules on UTF-8 bytes, after normalization."""

import unicodedata

import pyarrow as pa
import pytest

from scanner.batch import TextBatch
from scanner.settings import SketchSettings
from scanner.tokens import tokenize_batch

SETTINGS = SketchSettings()
WITH_PUNCTUATION = SketchSettings(keep_punctuation=True)


def tokens_of(text: str, settings: SketchSettings = SETTINGS) -> list[str]:
    return tokenize_batch(TextBatch.from_strings([text]), settings).texts()[0]


def test_ascii_words_are_case_folded():
    assert tokens_of("Hello WORLD hello") == ["hello", "world", "hello"]


def test_punctuation_is_dropped_by_default():
    assert tokens_of("Hello, world! (yes)") == ["hello", "world", "yes"]


def test_punctuation_kept_as_single_tokens():
    assert tokens_of("Hi, you!", WITH_PUNCTUATION) == ["hi", ",", "you", "!"]


def test_digit_runs_are_tokens():
    assert tokens_of("call 555-0100 in 2024, room B12") == ["call", "555", "0100", "in", "2024", "room", "b12"]


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_cafe_composed_and_decomposed_agree(form):
    assert tokens_of(unicodedata.normalize(form, "Café crème")) == ["café", "crème"]


def test_zero_width_characters_are_removed():
    assert tokens_of("zero\u200bwidth\u2060join\ufeff") == ["zerowidthjoin"]


def test_ideographs_and_kana_are_one_token_each():
    assert tokens_of("日本語のテキスト") == ["日", "本", "語", "の", "テ", "キ", "ス", "ト"]


def test_hangul_is_one_token_per_character():
    assert tokens_of("한국어") == ["한", "국", "어"]


def test_chinese_without_spaces():
    assert tokens_of("我爱北京。") == ["我", "爱", "北", "京"]


def test_curly_quotes_and_dashes_separate_words():
    assert tokens_of("“Quoted”—dash… ok") == ["quoted", "dash", "ok"]


def test_non_ascii_letters_stay_inside_words():
    assert tokens_of("Привет, мир naïve") == ["привет", "мир", "naïve"]


def test_fullwidth_forms_fold_to_ascii():
    assert tokens_of("ＡＢＣ１２３") == ["abc123"]


def test_case_folding_of_sharp_s():
    assert tokens_of("STRASSE straße") == ["strasse", "strasse"]


def test_ligature_is_decomposed():
    assert tokens_of("ﬁne") == ["fine"]


def test_emoji_separate_words():
    assert tokens_of("good🙂day") == ["good", "day"]


def test_empty_and_blank_documents_have_no_tokens():
    tokens = tokenize_batch(TextBatch.from_strings(["", "   ", "...", "a"]), SETTINGS)

    assert tokens.texts() == [[], [], [], ["a"]]


def test_batch_from_sliced_arrow_array():
    texts = pa.array(["skip me", "Alpha beta", "gamma"], type=pa.string()).slice(1)

    tokens = tokenize_batch(TextBatch.from_arrow(texts), SETTINGS)

    assert tokens.texts() == [["alpha", "beta"], ["gamma"]]


def test_batch_from_chunked_array():
    texts = pa.chunked_array([["One two"], ["Thrée"]], type=pa.large_string())

    tokens = tokenize_batch(TextBatch.from_arrow(texts), SETTINGS)

    assert tokens.texts() == [["one", "two"], ["thrée"]]


def test_batch_keeps_source_byte_lengths():
    batch = TextBatch.from_strings(["ＡＢ", "ab"])

    assert batch.source_bytes.tolist() == [6, 2]


def test_batch_rejects_nulls():
    with pytest.raises(ValueError, match="null"):
        TextBatch.from_arrow(pa.array(["a", None]))
