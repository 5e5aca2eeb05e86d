#!/bin/sh
# Makes a private SoftHSMv2 token store in DIR and initialises a token in it:
#
#   softhsm-fixtures/init-token.sh DIR [LABEL]
#
# DIR/softhsm2.conf   from softhsm2.conf.template (point SOFTHSM2_CONF at it)
# DIR/tokens/         the token store
# DIR/user-pin        the token's user PIN, random, mode 0600
# DIR/so-pin          the security officer PIN, random, mode 0600
#
# The token is initialised through `sshsign-server provision init-token`, which reads both PINs
# from their files, so no PIN ever appears in a command line. Used by `sshsign-server dev` and by
# the test suite (one store per test). Environment:
#   SSHSIGN_SERVER             the sshsign-server binary (default: sshsign-server on PATH)
#   SSHSIGN_SOFTHSM_TEMPLATE   the template (default: next to this script)
#   SSHSIGN_PKCS11_MODULE      libsofthsm2.so (default: found through the softhsm2 profile)
set -eu

dir=${1:?usage: init-token.sh DIR [LABEL]}
label=${2:-sshsign}
server=${SSHSIGN_SERVER:-sshsign-server}
template=${SSHSIGN_SOFTHSM_TEMPLATE:-$(dirname "$0")/softhsm2.conf.template}

umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
sed "s|@TOKENDIR@|$dir/tokens|" "$template" > "$dir/softhsm2.conf"

random_pin() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}
[ -s "$dir/user-pin" ] || random_pin > "$dir/user-pin"
[ -s "$dir/so-pin" ] || random_pin > "$dir/so-pin"

SOFTHSM2_CONF="$dir/softhsm2.conf" "$server" provision init-token \
    --profile softhsm2 --label "$label" \
    --so-pin-file "$dir/so-pin" --pin-file "$dir/user-pin" >/dev/null
