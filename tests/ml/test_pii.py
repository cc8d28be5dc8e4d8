import pytest

from ml.pii import scrub

SEEDED = [
    ("Mail me at jane.doe@example.com please", "jane.doe@example.com", "[EMAIL]"),
    ("Call +1 (415) 555-0134 tonight", "555-0134", "[PHONE]"),
    ("Office: +351 21 123 4567", "123 4567", "[PHONE]"),
    ("Ask <@U024BE7LH> about it", "U024BE7LH", "[USER]"),
    ("ping <@!123456789012345678>", "123456789012345678", "[USER]"),
    ("token xoxb-123456789012-abcdefghijklmnop", "xoxb-", "[SECRET]"),
    ("app token xapp-1-A0123-456-abcdef0123", "xapp-", "[SECRET]"),
    ("key sk-proj-abcdefghijklmnopqrstuvwx1234", "sk-proj", "[SECRET]"),
    ("hash deadbeefdeadbeefdeadbeefdeadbeef00112233", "deadbeef", "[SECRET]"),
    ("secret c2VjcmV0S2V5VmFsdWVGb3JUZXN0aW5nMTIzNDU2Nzg5", "c2VjcmV0", "[SECRET]"),
    ("card 4111 1111 1111 1111 on file", "4111", "[CARD]"),
]


@pytest.mark.parametrize(("text", "secret", "placeholder"), SEEDED)
def test_seeded_pii_is_replaced(text, secret, placeholder):
    result = scrub(text)
    assert secret not in result.text
    assert placeholder in result.text
    assert result.changed


@pytest.mark.parametrize(
    "text",
    [
        "Deploys run at 10:00 on Tuesdays; version 2.14.3 ships in Q3 2026.",
        "The canary gets 10% of traffic for 15 minutes.",
        "Rate limit: 600 requests per minute, burst 1200.",
        "Order 1234 5678 9012 3456 is not a card (fails Luhn).",
        "Error TC-409 means the VPN profile expired.",
        "The freeze runs from 2024-06-01 to 01.07.2024.",
    ],
)
def test_ordinary_text_is_left_alone(text):
    result = scrub(text)
    assert result.text == text and not result.changed


def test_counts_what_it_found():
    result = scrub("a@b.io and c@d.io, call 020 7946 0958")
    assert result.found["email"] == 2 and result.found["phone"] == 1
