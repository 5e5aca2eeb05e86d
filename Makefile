# sshsign: the two commands a new machine needs.
#
#   make dev     install what is missing, build, and start a development appliance on 127.0.0.1
#   make test    install what the tests need and run the whole suite
#
# Also: `make bench` (the signing and approval benchmarks, release build; `cargo bench --bench
# audit` measures the audit log alone, `cargo bench --bench soak` watches memory under load),
# `make fuzz` (every fuzz target for FUZZ_SECONDS each, 20 by default, as CI runs it), and
# `make deb` (the Debian packages sshsign and sshsign-server, in target/debian).

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# SoftHSMv2 is the development token; the tests drive the stock OpenSSH client and git, and
# move the server's clock forward with libfaketime to test expiry; openssl and curl test HTTPS;
# headless Chromium (with a virtual passkey authenticator) drives the approval pages; Go's
# checksum-database client code (golang.org/x/mod/sumdb, built offline from Debian's source
# package) reads the audit log's served tiles; python3-venv holds the PyPI tools below; iproute2
# brings up loopback in the network namespace the API conformance test runs in; kryoptic, the
# second PKCS#11 implementation, is built with clang (bindgen), from sources checked with gpgv
# and xz; libusb is for the native YubiHSM backend's USB connector; cargo-deb reads the binaries'
# library dependencies with dpkg-dev's dpkg-shlibdeps, and the package test checks the unit
# with systemd-analyze and makes its user with systemd-sysusers (systemd).
DEBIAN_PACKAGES := softhsm2 openssh-client git faketime openssl curl chromium tmux \
	golang-go golang-golang-x-mod-dev python3-venv iproute2 \
	libclang-dev gpgv xz-utils debian-archive-keyring libusb-1.0-0-dev dpkg-dev systemd \
	postgresql

# Third-party tools from PyPI the tests run against the appliance, in a virtual environment of
# their own (reinstalled when this list changes): ssh-audit checks the SSH algorithms,
# schemathesis the REST API against its OpenAPI document, and the official MCP Python SDK is
# the client `sshsign mcp` is tested with.
TOOLS := target/tools
PYPI_TOOLS := ssh-audit==3.9.* schemathesis==4.32.* mcp==2.3.*

.PHONY: deps dev test bench fuzz kryoptic deb
FUZZ_SECONDS := 20

deps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
	@cargo deb --version >/dev/null 2>&1 || cargo install --locked cargo-deb@3.8.0
	@set -f; if [ "$$(cat $(TOOLS)/installed 2>/dev/null)" != "$(PYPI_TOOLS)" ]; then \
		echo "installing from PyPI: $(PYPI_TOOLS)"; \
		rm -rf $(TOOLS) && python3 -m venv $(TOOLS) && \
		$(TOOLS)/bin/pip install -q $(PYPI_TOOLS) && \
		echo "$(PYPI_TOOLS)" > $(TOOLS)/installed; \
	fi

# kryoptic (crates.io), the second PKCS#11 implementation the backend and end-to-end tests run
# against, built once into target/kryoptic (about 8 minutes on two cores, most of it OpenSSL).
kryoptic:
	@tools/kryoptic/build.sh target/kryoptic

dev: deps
	cargo build --release --bins
	./target/release/sshsign-server dev

# The whole suite on SoftHSMv2, then the appliance's integration tests again on kryoptic (the
# backend conformance suite and the backup tests, which pick their tokens, run once), then
# again with the store in PostgreSQL (a cluster of each test's own; the package test, which
# checks the installed files, runs once).
test: deps kryoptic deb
	cargo nextest run
	SSHSIGN_TEST_TOKEN=kryoptic cargo nextest run -E 'binary(it) and not test(/^backends::/) and not test(/^backup::/)'
	SSHSIGN_TEST_DATABASE=postgres cargo nextest run -E 'binary(it) and not test(/^backends::/) and not test(/^backup::/) and not test(/^packages::/)'

# The Debian packages, from one release build of the library: sshsign (the client, the git
# shim, the gate and the MCP server) and sshsign-server (the appliance, its systemd unit and
# system user). Each cargo deb builds its own binary (never --no-build: a binary left in
# target/release by another build would be packaged as it is).
deb: deps
	cargo deb
	cargo deb --variant server

# The fuzz targets (fuzz/): libFuzzer through cargo-fuzz, on the nightly toolchain.
fuzz:
	@cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
	fuzz/run.sh $(FUZZ_SECONDS)

bench: deps
	cargo bench --bench throughput
	cargo bench --bench approvals
	cargo bench --bench tokens
