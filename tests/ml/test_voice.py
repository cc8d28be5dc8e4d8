"""A team's voice read from its references: the gate's voice score and the not-covered answer."""

from ml.voice import VoiceProfile, not_covered_answer, voice_score

REFERENCES = [
    "Short answer: Yes.\nDeploys run Monday to Thursday (see Deploy process).\n— fair winds, Tidewell Ops",
    "Short answer: 25 days.\nPlus public holidays where you live (see PTO).\n— fair winds, Tidewell Ops",
    "Short answer: No.\nOnly hotfixes during a freeze, agreed with the IC (see Freeze).\n— fair winds, Tidewell Ops",
    "Short answer: WireGuard.\nInstall Tidewell Connect from the portal (see VPN setup).\n— fair winds, Tidewell Ops",
]


def test_profile_reads_the_shared_opening_sign_off_lines_and_length():
    profile = VoiceProfile.of(REFERENCES)
    assert profile.opening == "Short answer:"
    assert profile.sign_offs == ("— fair winds, Tidewell Ops",)
    assert profile.lines == 3
    assert 10 <= profile.min_words <= profile.max_words <= 20


def test_voice_score_is_the_share_of_shared_traits():
    profile = VoiceProfile.of(REFERENCES)
    assert voice_score(REFERENCES[0], profile) == 1.0
    assert voice_score("Yes, deploys run Monday to Thursday.", profile) == 0.0
    # The opening alone: one trait of four.
    assert voice_score("Short answer: yes.", profile) == 0.25


def test_references_without_a_shared_opening_or_sign_off_are_judged_on_form_only():
    profile = VoiceProfile.of(["Yes, it is.", "No: only on Fridays.", "Ask in #ops."])
    assert profile.opening == "" and profile.sign_offs == ()
    assert len(profile.checks("Maybe.")) == 2  # lines and length


def test_not_covered_answer_is_written_in_the_house_form():
    profile = VoiceProfile.of(REFERENCES)
    text = not_covered_answer(profile)
    assert text.startswith("Short answer: ") and text.endswith("— fair winds, Tidewell Ops")
    assert "don't cover" in text and len(text.splitlines()) == 3
    assert not_covered_answer(VoiceProfile()).startswith("The documents")
