#!/bin/sh
# All packaging checks, for CI (.ci/run) and by hand. Root only (apt-get,
# debootstrap, chroot).
#
#   packaging/check.sh [path/to/smsgate_*.deb]
#
# 1. build the .deb with packaging/build-deb.sh (unless one is given)
# 2. systemd-analyze security --offline=true --threshold=15   (exposure <= 1.5)
# 3. systemd-analyze verify                                    (must print nothing)
# 4. lintian: no error and no warning (overrides carry their reasons)
# 5. packaging/install-test.sh                                 (bookworm chroot)
#
# A missing tool is installed with apt-get; if that fails, the check fails.
# Nothing is ever skipped.
set -eu

cd "$(dirname "$0")/.."
REPO=$(pwd)
UNIT=systemd/smsgate.service
START=$(date +%s)

say()  { echo "check: $*"; }
die()  { echo "check: FAILED: $*" >&2; exit 1; }
step() { echo; echo "=== check: $* ($(($(date +%s) - START)) s)"; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, debootstrap, chroot)"

need_tool() { # need_tool COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	say "$1 is missing: apt-get install $2"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"; } ||
		die "could not install $2 (needed for $1)"
	command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}
need_tool systemd-analyze systemd
need_tool man man-db
need_tool lintian lintian
need_tool debootstrap debootstrap

# --- 1. the package ---------------------------------------------------------------
step "build"
if [ $# -ge 1 ]; then
	DEB=$(realpath "$1")
else
	DEB=$(packaging/build-deb.sh | tail -n 1) || die "packaging/build-deb.sh"
	DEB=$(realpath "$DEB")
fi
[ -f "$DEB" ] || die "no package at $DEB"
say "package: $DEB"

# --- 2. sandboxing score ---------------------------------------------------------------
step "systemd-analyze security --offline=true --threshold=15 $UNIT"
out=$(systemd-analyze security --offline=true --threshold=15 "$UNIT" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | grep -E '^✗|Overall exposure' || true
[ "$rc" -eq 0 ] || die "the unit's exposure is above 1.5 (systemd-analyze security exit $rc)"

# --- 3. systemd-analyze verify ---------------------------------------------------------
# verify wants ExecStart's binary to exist and runs `man` for Documentation=:
# check a copy that points at the built binary, with the generated man page
# on MANPATH. (install-test.sh also verifies the unit as installed.)
step "systemd-analyze verify $UNIT"
v=$REPO/target/verify
rm -rf "$v"
mkdir -p "$v/man/man1"
BIN=$REPO/target/release/smsgate
[ -x "$BIN" ] || { BIN=$v/smsgate; dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/bin/smsgate >"$BIN"; chmod 755 "$BIN"; }
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/share/man/man1/smsgate.1.gz >"$v/man/man1/smsgate.1.gz"
grep -q '^ExecStart=/usr/bin/smsgate ' "$UNIT" || die "$UNIT: ExecStart does not start /usr/bin/smsgate"
sed "s|^ExecStart=/usr/bin/smsgate |ExecStart=$BIN |" "$UNIT" >"$v/smsgate.service"
out=$(MANPATH=$v/man systemd-analyze verify "$v/smsgate.service" 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out"
	die "systemd-analyze verify reported problems (exit $rc)"
fi
say "verify: no findings"

# --- 4. lintian -------------------------------------------------------------------------
step "lintian $DEB"
# lintian advises against running as root: run it as nobody when possible.
if command -v setpriv >/dev/null 2>&1 && setpriv --reuid=nobody --regid=nogroup --clear-groups test -r "$DEB" 2>/dev/null; then
	as_user="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp"
else
	as_user=""
fi
# (Not --show-overrides: lintian 2.116 then exits 2 on overridden warnings.)
out=$($as_user lintian --fail-on error,warning --display-level '>=pedantic' "$DEB" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 0 ] || die "lintian reported errors or warnings (exit $rc)"
if printf '%s\n' "$out" | grep -Eq '^[EW]: '; then die "lintian reported errors or warnings"; fi
say "lintian: no errors, no warnings; overridden (reasons in packaging/lintian-overrides):"
grep -E '^[a-z0-9.+-]+: ' packaging/lintian-overrides | sed 's/^/    /'


# --- 5. install test ----------------------------------------------------------------------
step "packaging/install-test.sh"
packaging/install-test.sh "$DEB" || die "packaging/install-test.sh"

echo
say "all packaging checks passed in $(($(date +%s) - START)) s"
