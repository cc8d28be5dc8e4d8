import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
