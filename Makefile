# The two set-up commands of the README. Each one does everything a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test tools venv

# Installs the bridge and runs it against the built-in FIC simulator on 127.0.0.1.
demo: venv
	$(BIN)/pip install --quiet .
	$(BIN)/radius-bridge demo

# Installs the bridge with its test tools (and Debian's radclient) and runs the whole suite.
test: venv tools
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m pytest

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# radclient (freeradius-utils) is a real second RADIUS client for the tests; required, so a
# failed install stops here. pamtester and libpam-radius-auth let tests/test_pam_radius.py log
# in through PAM; optional, so a failed install only warns (those tests then skip and say why).
# Each is installed only when missing; needs root or sudo, as Debian packages do.
tools:
	@command -v radclient >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq freeradius-utils; }
	@WANTED=; \
	command -v pamtester >/dev/null 2>&1 || WANTED=" pamtester"; \
	[ -n "$$(ls /lib/*/security/pam_radius_auth.so /usr/lib/*/security/pam_radius_auth.so \
	  /usr/lib64/security/pam_radius_auth.so 2>/dev/null)" ] || \
	  WANTED="$$WANTED libpam-radius-auth"; \
	[ -z "$$WANTED" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq $$WANTED >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$WANTED; } || \
	  echo "make tools: could not install$$WANTED, so tests/test_pam_radius.py will skip" >&2; }
