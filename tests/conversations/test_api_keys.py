import pytest

from console.conversations import api_keys
from console.conversations.models import ApiKey

pytestmark = pytest.mark.django_db


def test_api_keys_are_stored_as_prefix_and_hash_only():
    row, key = api_keys.create_api_key("docs search")
    assert key.startswith("ab-") and len(key) > 40
    assert row.prefix == key[:11] and row.key_hash == api_keys.hash_api_key(key)
    assert key not in (row.prefix, row.key_hash)


def test_only_the_exact_active_key_authenticates():
    row, key = api_keys.create_api_key("docs search")
    assert api_keys.authenticate_api_key(key) == row
    assert ApiKey.objects.get(pk=row.pk).last_used_at is not None
    assert api_keys.authenticate_api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert api_keys.authenticate_api_key(key[:11]) is None
    assert api_keys.authenticate_api_key("sk-" + key[3:]) is None
    ApiKey.objects.filter(pk=row.pk).update(active=False)
    assert api_keys.authenticate_api_key(key) is None
