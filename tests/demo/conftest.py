import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # seed_demo hashes seven passwords; the production hasher's cost is not what is tested here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
