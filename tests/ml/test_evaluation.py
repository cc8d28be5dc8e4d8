import math

import numpy as np
import pytest

from ml.evaluation import (
    Scores,
    fact_share,
    gate,
    groundedness,
    house_phrases,
    key_facts,
    rouge_l,
    score_answers,
    score_each,
    semantic_similarity,
    sentences,
    split_holdout,
)

# A deterministic bag-of-words embedding: one dimension per word, synonyms share a dimension.
VOCABULARY = (
    "the office opens at nine on weekdays parking is free for staff work daily a b c d "
    "refunds are paid within days of approval"
).split()
SYNONYMS = {"begins": "opens", "9": "nine"}


def bag_of_words(texts: list[str]) -> np.ndarray:
    vectors = np.zeros((len(texts), len(VOCABULARY)))
    for row, text in enumerate(texts):
        for word in text.lower().replace(".", " ").split():
            word = SYNONYMS.get(word, word)
            if word in VOCABULARY:
                vectors[row, VOCABULARY.index(word)] += 1
    return vectors


OFFICE = ["The office opens at nine on weekdays."]


def test_rouge_l_is_the_lcs_f_measure_on_lowercase_words():
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # LCS "a c": precision 2/4, recall 2/2 -> F = 2 * 0.5 * 1 / 1.5
    assert rouge_l("a b c d", "a c") == pytest.approx(2 / 3)
    assert rouge_l("The CAT, sat!", "the cat sat") == 1.0
    assert rouge_l("x y z", "a b c") == 0.0


def test_rouge_l_of_an_empty_text_is_zero():
    assert rouge_l("", "the reference") == 0.0
    assert rouge_l("an answer", "  ") == 0.0


def test_semantic_similarity_is_the_cosine_of_each_pair():
    similarity = semantic_similarity(bag_of_words, ["a b", "a", "a"], ["b a", "b", "a b"])
    assert similarity == pytest.approx([1.0, 0.0, 1 / math.sqrt(2)])


def test_semantic_similarity_needs_one_reference_per_candidate():
    assert semantic_similarity(bag_of_words, [], []) == []
    with pytest.raises(ValueError, match="2 candidates but 1 references"):
        semantic_similarity(bag_of_words, ["a", "b"], ["a"])


def test_sentences_drop_citations_and_wordless_pieces():
    assert sentences("The office opens at nine [1]. Parking is free [1, 2]!\n\n[3]") == [
        "The office opens at nine.",
        "Parking is free!",
    ]


def test_groundedness_counts_sentences_whose_words_are_in_the_context():
    # Sentence 1: office, opens, nine all in the context. Sentence 2: no word in common.
    answer = "The office opens at nine [1]. Parking is free for staff."
    assert groundedness(answer, OFFICE, bag_of_words) == 0.5


def test_groundedness_accepts_a_paraphrase_by_embedding_similarity():
    # Content words work, begins, 9, daily: none literally in the context. The embedding maps
    # begins->opens and 9->nine, so the cosine is 3 / sqrt(5 * 7) = 0.507 against the context.
    answer = "Work begins at 9 daily."
    assert groundedness(answer, OFFICE, bag_of_words, threshold=0.5) == 1.0
    assert groundedness(answer, OFFICE, bag_of_words, threshold=0.6) == 0.0


def test_groundedness_of_an_empty_answer_or_without_context_is_zero():
    assert groundedness("", OFFICE, bag_of_words) == 0.0
    assert groundedness("[1]", OFFICE, bag_of_words) == 0.0
    assert groundedness("The office opens at nine.", [], bag_of_words) == 0.0


def test_house_phrases_are_sentences_recurring_across_the_references():
    references = [
        "Short answer: nine. The office opens at nine.\n— Cheers, Ops",
        "Short answer: yes. Parking is free for staff.\n— cheers, ops",
        "Refunds are paid within days.\n— Cheers, Ops",
        "The office opens at nine.",
    ]
    # The sign-off is in 3 of 4; a fact two answers share is not house phrasing.
    assert house_phrases(references) == {"cheers ops"}
    assert house_phrases(references[:2]) == frozenset()  # fewer than three: nothing counts as recurring


def test_groundedness_leaves_house_phrasing_out_of_the_claims():
    house = frozenset({"cheers ops"})
    answer = "The office opens at nine.\n— Cheers, Ops"
    assert groundedness(answer, OFFICE, bag_of_words) == 0.5  # the sign-off is no fact of the context
    assert groundedness(answer, OFFICE, bag_of_words, house=house) == 1.0
    assert groundedness("— Cheers, Ops", OFFICE, bag_of_words, house=house) == 0.0  # says nothing


def test_score_answers_does_not_hold_the_references_sign_off_against_an_answer():
    references = [
        "The office opens at nine.\n— Cheers, Ops",
        "Parking is free for staff.\n— Cheers, Ops",
        "Refunds are paid within days.\n— Cheers, Ops",
    ]
    voiced = [
        "The office opens at nine.\n— Cheers, Ops",
        "Parking is free.\n— Cheers, Ops",
        "Refunds are paid.",
    ]
    plain = ["The office opens at nine.", "Parking is free.", "Refunds are paid."]
    context = [OFFICE, ["Parking is free for staff."], ["Refunds are paid within days of approval."]]
    assert score_answers(voiced, references, context, bag_of_words).groundedness == 1.0
    assert score_answers(plain, references, context, bag_of_words).groundedness == 1.0


def test_score_answers_averages_each_metric():
    scores = score_answers(
        ["the office opens at nine", "parking is free"],
        ["the office opens at nine", "refunds are paid within days"],
        [OFFICE, OFFICE],
        bag_of_words,
    )
    assert scores.similarity == pytest.approx(0.5)
    assert scores.rouge_l == pytest.approx(0.5)
    assert scores.groundedness == pytest.approx(0.5)
    assert scores.length == 4.0


def test_score_answers_refuses_an_empty_or_ragged_set():
    with pytest.raises(ValueError, match="No answers"):
        score_answers([], [], [], bag_of_words)
    with pytest.raises(ValueError, match="1 answers, 2 references"):
        score_answers(["a"], ["a", "b"], [[]], bag_of_words)


def test_split_holdout_holds_out_a_fifth_deterministically_whatever_the_order():
    ids = list(range(1, 101))
    train, heldout = split_holdout(ids)
    assert len(heldout) == 20
    assert sorted(train + heldout) == ids and not set(train) & set(heldout)
    assert split_holdout(list(reversed(ids))) == (train, heldout)
    assert split_holdout(ids, seed=7)[1] != heldout


def test_split_holdout_keeps_a_minimum_while_half_remains_for_training():
    assert len(split_holdout(range(10))[1]) == 5
    assert len(split_holdout(range(20))[1]) == 5
    assert len(split_holdout(range(6))[1]) == 3
    assert split_holdout([1]) == ([1], [])


def test_split_holdout_always_holds_out_forced_ids():
    train, heldout = split_holdout(range(100), forced=[3, 50, 999])
    assert {3, 50} <= set(heldout) and 999 not in heldout
    assert len(heldout) == 20
    train, heldout = split_holdout(range(10), forced=range(7))
    assert heldout == list(range(7)) and train == [7, 8, 9]


def scores(facts: float, voice: float) -> Scores:
    return Scores(similarity=0.5, rouge_l=0.3, groundedness=0.5, length=20.0, facts=facts, voice=voice)


def test_gate_promotes_a_candidate_as_factual_as_retrieval_alone_and_better_in_voice():
    decision = gate(scores(0.49, 0.90), live=None, base=scores(0.50, 0.25))
    assert decision.promote
    assert decision.reasons == [
        "facts 0.490 vs 0.500 for the base model with retrieval: worse by 0.010, within the margin 0.020",
        "voice 0.900 vs 0.250 for the base model with retrieval: better by 0.650",
    ]


def test_gate_refuses_a_candidate_less_factual_than_retrieval_alone_and_names_the_check():
    decision = gate(scores(0.40, 1.0), live=None, base=scores(0.50, 0.25), margin=0.05)
    assert not decision.promote
    assert decision.reasons[0] == (
        "facts 0.400 vs 0.500 for the base model with retrieval: worse by 0.100, more than the margin 0.050"
    )


def test_gate_refuses_a_candidate_that_gains_no_voice_over_retrieval_alone():
    decision = gate(scores(0.60, 0.27), live=None, base=scores(0.50, 0.25))
    assert not decision.promote
    assert decision.reasons[1] == (
        "voice 0.270 vs 0.250 for the base model with retrieval: better by 0.020, not better by the 0.050 needed"
    )
    assert gate(scores(0.60, 0.27), live=None, base=scores(0.50, 0.25), voice_gain=0.0).promote


def test_gate_also_holds_the_candidate_to_the_live_adapter_within_the_margin():
    decision = gate(scores(0.60, 0.80), live=scores(0.61, 0.95), base=scores(0.50, 0.25))
    assert not decision.promote
    assert (
        decision.reasons[2]
        == "facts 0.600 vs 0.610 for the live adapter: worse by 0.010, within the margin 0.020"
    )
    assert decision.reasons[3] == (
        "voice 0.800 vs 0.950 for the live adapter: worse by 0.150, more than the margin 0.020"
    )


REFERENCE = (
    "Short answer: Pay $55 by 09:00 in #billing.\nAsk the CAB in Lisbon about TC-409. (see Expense policy)"
)


def test_key_facts_are_numbers_codes_channels_acronyms_and_names_inside_sentences():
    facts = key_facts(REFERENCE)
    assert facts == ["$55", "09:00", "#billing", "cab", "lisbon", "tc-409", "expense"]
    # "Short" opens the text, "Pay" follows a colon and "Ask" opens a line: grammar, not names.
    assert not {"short", "pay", "ask"} & set(facts)
    assert key_facts(REFERENCE, ignore=frozenset({"lisbon"})) == [f for f in facts if f != "lisbon"]


def test_fact_share_counts_the_reference_facts_the_answer_states():
    ignore = frozenset({"short", "answer"})
    assert (
        fact_share(
            "It costs $55, due 09:00; see the CAB in Lisbon, TC-409, #billing, expense.",
            REFERENCE,
            ignore=ignore,
        )
        == 1.0
    )
    assert fact_share("It costs $29 and is due at noon.", REFERENCE, ignore=ignore) == 0.0
    assert fact_share("Pay $55 before 09:00.", REFERENCE, ignore=ignore) == pytest.approx(2 / 7)
    assert fact_share("anything", "yes, it is fine.") is None  # nothing checkable in the reference
    assert fact_share("the cab is fine", "Ask CABLE.") == 0.0  # whole words only


def test_score_each_mixes_facts_and_keeps_voice_apart():
    references = [
        "Short answer: the office opens at 9.\n— Cheers, Ops",
        "Short answer: parking is free.\n— Cheers, Ops",
        "Short answer: refunds take 5 days.\n— Cheers, Ops",
    ]
    answers = [
        "Short answer: the office opens at 9.\n— Cheers, Ops",
        "parking costs money",
        "refunds take 5 days",
    ]
    context = [OFFICE, ["Parking is free for staff."], ["Refunds take 5 days."]]
    each = score_each(answers, references, context, bag_of_words)
    assert each[0].voice == 1.0 and each[2].voice < 0.5
    assert each[0].key_facts == 1.0 and each[1].key_facts is None and each[2].key_facts == 1.0
    assert each[1].facts == pytest.approx((each[1].similarity + each[1].groundedness) / 2)
    mean = score_answers(answers, references, context, bag_of_words)
    assert mean.key_facts == 1.0 and mean.voice == pytest.approx(sum(s.voice for s in each) / 3)
