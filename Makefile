# Casusult impressions: `make run` serves the site, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell .ci/find-python)
VENV := .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE ?= settings.dev
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_USERS ?= 20
DEMO_POSTS ?= 500
# In-process backends (QUEUE_BACKEND=immediate or dummy) have no worker to start.
WORKER := $(if $(filter immediate dummy,$(QUEUE_BACKEND)),,"$(PY) manage.py runworker")

.PHONY: run serve test test-long test-lowest test-mariadb lint format docs bench loadtest venv services database migrate browser axe pgbouncer gettext faketime screenshots dist

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "No Python 3.12+ found; see .ci/find-python" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

services: venv
	@$(PY) -m devservices ensure

# make run and make serve start the Redis they need themselves (not daemonized, kept in
# $(STATE_DIR)/redis) when none is running, and stop it on Ctrl-C with the rest.
STATE_DIR ?= .local
DEFAULT_REDIS_URL := redis://127.0.0.1:6379/0
SUPERVISE := $(PY) -m devservices supervise --state-dir $(STATE_DIR) \
	--redis-url "$${REDIS_URL:-$(DEFAULT_REDIS_URL)}" \
	--redis-url "$${RQ_REDIS_URL:-$${REDIS_URL:-$(DEFAULT_REDIS_URL)}}"

database: venv
	@$(PY) -m devservices ensure --no-redis

migrate: database
	$(PY) manage.py migrate --noinput

# The names a browser reaches `make run` and `make serve` by: the loopback ones and HOST (Django
# answers 400 to any other), for a wildcard HOST (0.0.0.0, ::) this machine's name and addresses
# (uname -n where there is no hostname command, as in minimal container images); ALLOWED_HOSTS in
# the environment wins. Only for settings.dev: settings.prod refuses to start without the names
# given.
comma := ,
empty :=
space := $(empty) $(empty)
bracketed = $(if $(and $(findstring :,$(1)),$(if $(findstring [,$(1)),,x)),[$(1)],$(1))
SERVED_NAMES = $(if $(filter 0.0.0.0 :: [::] 0,$(HOST)),$(shell hostname 2>/dev/null || uname -n) $(shell hostname -I 2>/dev/null),$(HOST))
ifeq ($(DJANGO_SETTINGS_MODULE),settings.dev)
run serve: export ALLOWED_HOSTS ?= $(subst $(space),$(comma),$(strip 127.0.0.1 localhost [::1] \
	$(foreach name,$(SERVED_NAMES),$(call bracketed,$(name)))))
endif

run: migrate
	@$(PY) manage.py seed_demo --if-empty --users $(DEMO_USERS) --posts $(DEMO_POSTS)
	@$(PY) manage.py ensure_admin --password-file $(STATE_DIR)/admin-password
	@echo "Timeline: http://$(HOST):$(PORT)/   API: http://$(HOST):$(PORT)/api/timeline/   Admin: http://$(HOST):$(PORT)/admin/"
	@echo "Ctrl-C stops everything."
	@# exec: make itself waits for supervise (a shell between them would die of Ctrl-C at once,
	@# and make would return while supervise is still stopping the others).
	@exec $(SUPERVISE) "$(PY) manage.py runserver $(HOST):$(PORT)" $(WORKER)

# As in production: gunicorn (casusult/gunicorn_conf.py; GUNICORN_CMD_ARGS overrides), whitenoise for
# static files, the worker next to it. Settings stay settings.dev unless DJANGO_SETTINGS_MODULE says.
serve: migrate
	@$(PY) manage.py seed_demo --if-empty --users $(DEMO_USERS) --posts $(DEMO_POSTS)
	@$(PY) manage.py ensure_admin --password-file $(STATE_DIR)/admin-password
	@$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "gunicorn on http://$(HOST):$(PORT)/ (health: /healthz /readyz, metrics: /metrics). Ctrl-C stops everything."
	@GUNICORN_CMD_ARGS="--bind $(HOST):$(PORT) $$GUNICORN_CMD_ARGS" exec $(SUPERVISE) \
		"$(PY) -m gunicorn -c python:casusult.gunicorn_conf casusult.wsgi" $(WORKER)

# Headless Chromium for the dashboard's browser test and the screenshots: Debian's package, as
# root (CI); Playwright drives it through executable_path and never downloads a browser.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else echo "No $(CHROMIUM): run 'sudo apt-get install -y chromium' (the browser test needs it)" >&2; exit 1; fi; }

# axe-core for the accessibility tests (tests/site/test_browser_accessibility.py): the npm registry's
# package, pinned, into $(AXE_DIR) (tests/browser.py reads it there, or at TEST_AXE_CORE); npm is
# Debian's package, installed as root (CI). Kept between runs: npm runs again only for a new version.
AXE_CORE_VERSION ?= 4.14.1
AXE_DIR := .local/axe
axe:
	@grep -qs '"version": "$(AXE_CORE_VERSION)"' $(AXE_DIR)/node_modules/axe-core/package.json || { \
		command -v npm >/dev/null || { \
			if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; \
			else echo "No npm: run 'sudo apt-get install -y npm' (the accessibility test needs axe-core)" >&2; exit 1; fi; }; \
		npm install --prefix $(AXE_DIR) --no-audit --no-fund --loglevel=error axe-core@$(AXE_CORE_VERSION); }

# PgBouncer for the tests behind a pooler in transaction mode (tests/impressions/test_pooler.py, which
# starts its own on a free port): Debian's package, as root (CI); without it those tests skip.
PGBOUNCER ?= /usr/sbin/pgbouncer
pgbouncer:
	@test -x $(PGBOUNCER) || command -v pgbouncer >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; \
		else echo "No pgbouncer: run 'sudo apt-get install -y pgbouncer' (the pooler tests skip without it)" >&2; fi; }

# GNU gettext (xgettext, msgfmt) for the translation tests, which run makemessages in each app's
# directory as an adopter does (tests/translation.py): Debian's package, as root (CI); without it
# those tests fail saying so.
gettext:
	@command -v xgettext >/dev/null && command -v msgfmt >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext; \
		else echo "No gettext tools: run 'sudo apt-get install -y gettext' (the translation tests need them)" >&2; fi; }

# The tests run in TEST_WORKERS processes (pytest-xdist; 1: in pytest's own process), each with its
# own test database and Redis databases (tests/workers.py, loaded by -p before the settings are).
# Most tests wait on other processes (workers, servers, a browser), so two share this 2-core VM
# well. --dist loadfile hands out whole test files (their module fixtures made once), and
# tests/distributions/ whole (the wheels and their virtual environment made once).
# `make test-long` runs only the tests marked `long` (worker processes killed mid-flush, ...),
# `make test TEST_MARKERS="not long"` leaves them out.
# libfaketime for the tests that run a process with its clock off (tests/processes.py
# skewed_clock): Debian's package, as root (CI); without it those tests skip.
FAKETIME_LIB ?= /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
faketime:
	@test -e $(FAKETIME_LIB) || command -v faketime >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime; \
		else echo "No libfaketime: run 'sudo apt-get install -y faketime' (the clock skew tests skip without it)" >&2; fi; }

TEST_WORKERS ?= 2
TEST_MARKERS ?=
test: DJANGO_SETTINGS_MODULE = settings.test
test: venv browser axe pgbouncer gettext faketime
	@DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m devservices ensure
	$(PY) -m pytest -p tests.workers $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) \
		$(if $(TEST_MARKERS),-m "$(TEST_MARKERS)") $(PYTEST_ARGS)

test-long:
	@$(MAKE) --no-print-directory test TEST_MARKERS=long

# The distributions on the lowest versions they declare (distributions/lowest.txt) and the lowest
# Python (3.12, pyenv's oldest): a virtual environment of its own, kept in $(LOWEST_VENV), holds the
# wheels of `make dist`, those versions and the tests' own packages (pinned as in requirements*.txt;
# psycopg2 at Django's lowest, for the tests of the apps on it);
# the quick starts and the apps' tests (all but the browser's) run on it. About 10 minutes: not
# part of `make test`.
LOWEST_VENV := .venv-lowest
LOWEST_PY := $(LOWEST_VENV)/bin/python
LOWEST_PYTHON ?= $(firstword $(shell ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.12.*/bin/python3 2>/dev/null | sort -V))
LOWEST_TOOLS = $(shell grep -hE '^(pytest|pytest-django|djangorestframework|gevent|psycopg-pool|hypothesis|moto|playwright|dj-database-url|whitenoise|prometheus-client|gunicorn)(\[[a-z,]+\])?==' requirements.txt requirements-dev.txt)
LOWEST_TESTS ?= tests/impressions tests/queues tests/distributions/test_impressions_quickstart.py \
	tests/distributions/test_queues_quickstart.py --ignore tests/impressions/test_browser.py
test-lowest: DJANGO_SETTINGS_MODULE = settings.test
test-lowest: dist
	@test -x $(LOWEST_PY) || { test -n "$(LOWEST_PYTHON)" || { echo "No Python 3.12 in pyenv: run 'pyenv install 3.12' or make test-lowest LOWEST_PYTHON=/path/to/python3.12" >&2; exit 1; }; $(LOWEST_PYTHON) -m venv $(LOWEST_VENV); }
	$(LOWEST_PY) -m pip install --quiet --disable-pip-version-check -c distributions/lowest.txt \
		$(foreach tool,$(LOWEST_TOOLS),'$(tool)') psycopg2-binary \
		"$$(ls dist/casusult_impressions-*.whl)[postgresql]" "$$(ls dist/casusult_queues-*.whl)[rq,sqs]" \
		dist/casusult_redis_endpoints-*.whl
	@# The same version number as the last run's: pip keeps those unless told.
	$(LOWEST_PY) -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall dist/*.whl
	$(LOWEST_PY) -m pip check
	@DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m devservices ensure
	TEST_DISTRIBUTIONS_VENV=$(LOWEST_VENV) $(LOWEST_PY) -m pytest $(LOWEST_TESTS) $(PYTEST_ARGS)

# The impressions tests of the portable path (the flush, its ledger, the history, the roll-up, the
# dashboard, the admin) on MySQL/MariaDB, at MARIADB_URL (its test database test_NAME is made and
# dropped). Not part of `make test` nor CI; installs mysqlclient into the venv when it is missing
# (not in requirements-dev.txt: it builds from source, against the client's headers, which it
# installs from Debian first). Left out: the tests
# of what only PostgreSQL has (advisory locks, lock_timeout, pg_terminate_backend, the leaders'
# trim) and those whose fixtures write PostgreSQL's SQL (generate_series, ON CONFLICT, schemas).
MARIADB_URL ?= mysql://root@127.0.0.1:3306/test
MARIADB_TESTS ?= $(addprefix tests/impressions/test_,$(addsuffix .py,flush history history_write \
	rollup dashboard dashboard_unit dashboard_live admin localized_admin failures parallel_flush \
	record migrations reuse dst without_use_tz buffer_totals set_aside leaders budgets api drf \
	removal_commands reloads frames resent_scripts newer_layout user_middleware asgi full_redis \
	settings_changed))
MARIADB_POSTGRESQL_ONLY := holds_back_only_the_flushes or without_queueing_ahead \
	or starts_no_batch_while or shows_the_roll_up_s_progress or stopped_database_connection \
	or lost_in_a_batch_copy or transaction_left_open or stalled_flush \
	or reschedules_itself_when_the_database or build_before_0006 or past_a_32_bit \
	or trim_keeps_the_top or scraping_metrics_in_a_loop or failing_after_a_batch_committed \
	or (killed_anywhere and not delete_batches)
test-mariadb: DJANGO_SETTINGS_MODULE = settings.test
test-mariadb: venv
	@$(PY) -c "import MySQLdb" 2>/dev/null || { echo "installing mysqlclient (and the MySQL client headers it builds against)"; \
		{ dpkg -s default-libmysqlclient-dev pkg-config >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq default-libmysqlclient-dev pkg-config; }; } && \
		$(PY) -m pip install --quiet --disable-pip-version-check mysqlclient==2.3.2; } || \
		{ echo "could not install mysqlclient: apt-get install default-libmysqlclient-dev pkg-config, then $(PY) -m pip install mysqlclient" >&2; exit 1; }
	@$(PY) -c "import MySQLdb, sys, dj_database_url as u; c = u.parse(sys.argv[1]); MySQLdb.connect(host=c['HOST'] or '127.0.0.1', port=int(c['PORT'] or 3306), user=c['USER'] or 'root', password=c['PASSWORD'] or '')" "$(MARIADB_URL)" 2>/dev/null || \
		{ echo "no MySQL/MariaDB server answers at MARIADB_URL=$(MARIADB_URL): start one (Debian: apt-get install mariadb-server), or set MARIADB_URL" >&2; exit 1; }
	DATABASE_URL=$(MARIADB_URL) $(PY) -m pytest $(MARIADB_TESTS) -k "not ($(MARIADB_POSTGRESQL_ONLY))" $(PYTEST_ARGS)

# PNGs of the dashboard and a post's chart into docs/screenshots/, from a database of their own
# (created and filled with a made-up history) and a Redis db they may FLUSHDB.
SCREENSHOTS_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/screenshots
SCREENSHOTS_REDIS_URL ?= redis://127.0.0.1:6379/9
screenshots: venv browser
	@$(PY) -m devservices ensure --database-url $(SCREENSHOTS_DATABASE_URL) --redis-url $(SCREENSHOTS_REDIS_URL)
	DATABASE_URL=$(SCREENSHOTS_DATABASE_URL) REDIS_URL=$(SCREENSHOTS_REDIS_URL) \
		DJANGO_SETTINGS_MODULE=settings.test $(PY) -m screenshots

# The apps' distributions (wheels and sdists) into dist/: casusult-impressions, casusult-queues and
# casusult-redis-endpoints, each built from its package and distributions/<name>/pyproject.toml.
dist: venv
	rm -rf dist
	$(PY) distributions/build.py dist

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the dependency rule (pyproject.toml [tool.importlinter])
	$(VENV)/bin/mypy  # the apps' public API, --strict (pyproject.toml [tool.mypy])
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $$(mktemp -d)

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or a page missing
# from the navigation fails, as in make lint.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The benchmarks' own database and Redis db (never DATABASE_URL/REDIS_URL: they FLUSHDB and add
# a million posts). Flags: make bench BENCH_ARGS="--rounds 5 --flush-sizes 10000,100000".
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/8
# The real-server section drives gunicorn with wrk (Debian's package), installed here if missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
bench: venv
	@$(PY) -m devservices ensure --database-url $(BENCH_DATABASE_URL) --redis-url $(BENCH_REDIS_URL)
	@command -v wrk >/dev/null || { echo "installing wrk for the real-server benchmark"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) \
		DJANGO_SETTINGS_MODULE=settings.test $(PY) -m benchmarks $(BENCH_ARGS)

# The load test's own PostgreSQL database (created if missing; it seeds demo users and at least
# 100,000 posts there, reused by the next run); it starts its own Redis, moto and gunicorn on free
# ports. Two runs: steady, then a Redis outage.
# Flags: make loadtest LOADTEST_ARGS="--clients 100 --duration 120" (python -m loadtest --help).
LOADTEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/loadtest
LOADTEST_ARGS ?= --clients 50 --duration 60
loadtest: venv
	@$(PY) -m devservices ensure --database-url $(LOADTEST_DATABASE_URL)
	DATABASE_URL=$(LOADTEST_DATABASE_URL) DJANGO_SETTINGS_MODULE=settings.test $(PY) -m loadtest $(LOADTEST_ARGS)
	DATABASE_URL=$(LOADTEST_DATABASE_URL) DJANGO_SETTINGS_MODULE=settings.test $(PY) -m loadtest $(LOADTEST_ARGS) --redis-outage
