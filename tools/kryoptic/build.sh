#!/bin/sh
# Builds kryoptic, an independent PKCS#11 3.x software token written in Rust, into
# OUT/libkryoptic_pkcs11.so (OUT is target/kryoptic by default), once: a later run with the same
# versions does nothing.
#
# kryoptic's Ed25519 needs OpenSSL 3.2 or later (kryoptic-lib's eddsa feature asks for ossl320);
# Debian 12 has 3.0. So kryoptic is linked statically against OpenSSL 3.5 built from the source
# that Debian 13 ships, found through Debian's signed archive index and checked against it:
#   InRelease (verified by gpgv with debian-archive-keyring) -> main/source/Sources.xz (SHA-256)
#   -> the openssl .orig.tar.gz (SHA-256).
# kryoptic itself comes from crates.io through cargo, checked against tools/kryoptic/Cargo.lock.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-target/kryoptic}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
KRYOPTIC_VERSION=1.5.4
SUITE=trixie
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
STAMP="kryoptic $KRYOPTIC_VERSION, OpenSSL from Debian $SUITE"

if [ -f "$OUT/libkryoptic_pkcs11.so" ] && [ "$(cat "$OUT/built" 2>/dev/null)" = "$STAMP" ]; then
	exit 0
fi

work="$OUT/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

# 1. OpenSSL sources, each step checked against the one before.
curl -fsS -o InRelease "$MIRROR/dists/$SUITE/InRelease"
gpgv --keyring "$KEYRING" --output Release InRelease 2>gpgv.log ||
	{ cat gpgv.log >&2; echo "build.sh: Debian's $SUITE index failed its signature check" >&2; exit 1; }
sources_sum=$(awk '/^SHA256:/ { s = 1; next } /^[^ ]/ { s = 0 } s && $3 == "main/source/Sources.xz" { print $1 }' Release)
[ -n "$sources_sum" ] || { echo "build.sh: no main/source/Sources.xz in the $SUITE index" >&2; exit 1; }
curl -fsS -o Sources.xz "$MIRROR/dists/$SUITE/main/source/Sources.xz"
echo "$sources_sum  Sources.xz" | sha256sum -c --quiet -
xz -dc Sources.xz | awk '
	/^Package: / { p = ($2 == "openssl") }
	p && /^Directory: / { dir = $2 }
	p && /^Checksums-Sha256:/ { c = 1; next }
	p && /^[^ ]/ { c = 0 }
	p && c && $3 ~ /\.orig\.tar\.gz$/ { sum = $1; file = $3 }
	p && /^$/ && sum != "" { print sum, dir "/" file; exit }
' > openssl.source
read -r openssl_sum openssl_path < openssl.source ||
	{ echo "build.sh: no openssl source package in $SUITE" >&2; exit 1; }
curl -fsS -o openssl.tar.gz "$MIRROR/$openssl_path"
echo "$openssl_sum  openssl.tar.gz" | sha256sum -c --quiet -
mkdir openssl
tar -xzf openssl.tar.gz -C openssl --strip-components=1

# 2. kryoptic's sources from crates.io, as the lock file pins them.
cargo fetch --locked --manifest-path "$here/Cargo.toml"
manifest=$(cargo metadata --locked --format-version 1 --manifest-path "$here/Cargo.toml" |
	python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "kryoptic":
        print(p["manifest_path"])')
cp -r "$(dirname "$manifest")" kryoptic

# 3. The cdylib, OpenSSL built into it (without the dynamic feature, kryoptic's ossl crate needs
# its ossl-sys feature named to build OpenSSL from KRYOPTIC_OPENSSL_SOURCES).
(cd kryoptic && KRYOPTIC_OPENSSL_SOURCES="$work/openssl" CARGO_TARGET_DIR="$work/target" \
	cargo build --release --locked --no-default-features --features standard,ossl/ossl-sys)
cp target/release/libkryoptic_pkcs11.so "$OUT/libkryoptic_pkcs11.so"
echo "$STAMP" > "$OUT/built"
cd "$OUT" && rm -rf build
echo "built $OUT/libkryoptic_pkcs11.so ($STAMP)"
