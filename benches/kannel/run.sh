#!/usr/bin/env bash
# smsgate and Kannel 1.4.5 side by side on loopback, from one command
# (issue 15, item 4). See benches/kannel/README.md.
#
#   benches/kannel/run.sh            full run: three alternated rounds (about 5 min)
#   benches/kannel/run.sh --quick    smoke run on small numbers (under a minute)
#   benches/kannel/run.sh --skip-extras | --only-extras | --rounds N
#
# Installs what is missing (Debian's kannel and kannel-extras with apt-get,
# oha from crates.io into target/tools), builds smsgate --release, then
# hands over to bench.py. Every figure and the final table go to stdout;
# the same figures as JSON to target/kannel-bench/latest.json.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# The load generator, pinned so runs stay comparable.
OHA_VERSION=1.16.0

case "${1:-}" in
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac

sudo=
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi

if [ ! -x /usr/sbin/bearerbox ] || [ ! -x /usr/sbin/smsbox ] || [ ! -x /usr/lib/kannel/test/fakesmsc ]; then
    echo "== installing kannel and kannel-extras (apt-get)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq kannel kannel-extras >&2
fi
if ! /usr/sbin/bearerbox --version 2>&1 | grep -q "1\.4\.5"; then
    echo "warning: this bearerbox is not Kannel 1.4.5:" >&2
    /usr/sbin/bearerbox --version 2>&1 | head -n 3 >&2 || true
fi

tools="$root/target/tools"
oha="$tools/bin/oha"
if ! "$oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    echo "== installing oha $OHA_VERSION (cargo install, into target/tools)" >&2
    CARGO_INCREMENTAL=0 cargo install --locked --quiet oha --version "$OHA_VERSION" --root "$tools"
fi

command -v python3 >/dev/null || {
    echo "== installing python3 (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 >&2
}

echo "== building smsgate --release" >&2
(cd "$root" && CARGO_INCREMENTAL=0 cargo build --release --locked --quiet --bin smsgate)
# The DNCR look-up bench runs on the state the script fills; built now so
# its compile time is not in any figure.
(cd "$root" && CARGO_INCREMENTAL=0 cargo bench --locked --quiet --bench dncr_lookup --no-run)

out="$root/target/kannel-bench"
mkdir -p "$out/cache"
work=$(mktemp -d "$out/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The generated CSV files are kept between runs (cache/); the daemons'
# state, Kannel's configs and spools live in $work and go at the end.
ln -s "$out/cache" "$work/cache"

uptime
PYTHONDONTWRITEBYTECODE=1 python3 "$here/bench.py" \
    --smsgate "$root/target/release/smsgate" \
    --oha "$oha" \
    --root "$root" \
    --workdir "$work" \
    --json "$out/latest.json" \
    "$@"
uptime
