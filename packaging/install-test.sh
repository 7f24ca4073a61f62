#!/bin/sh
# Install test of the .deb in a minimal Debian bookworm chroot.
#
#   sudo packaging/install-test.sh [path/to/smsgate_*.deb]
#
# Without an argument it builds the package with packaging/build-deb.sh.
# Needs root (debootstrap, chroot, mount). The bookworm root is made once with
# debootstrap (variant minbase, plus systemd for systemd-sysusers) and cached
# as target/install-test/cache/bookworm-minbase-<arch>.tar.gz, so reruns take
# seconds and need no network. Delete the tarball to refresh it.
#
# Checks: install with apt (dependencies) on top of dpkg; the smsgate user and
# group, smsgate in dialout; owners and modes; `smsgate check-config` on the
# shipped conffile (as root and as the smsgate user); an upgrade keeps an
# edited conffile (twice: with an unchanged and with a changed packaged
# default); remove keeps the data and the config; purge leaves nothing behind.
#
# Environment: MIRROR (default http://deb.debian.org/debian), KEEP_ROOT=1
# keeps the chroot in target/install-test/root for inspection.
set -eu

cd "$(dirname "$0")/.."
REPO=$(pwd)

SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$REPO/target/install-test
ROOT=$WORK/root
CACHE=$WORK/cache

FAILS=0
say()  { echo "install-test: $*"; }
die()  { echo "install-test: ERROR: $*" >&2; exit 1; }
ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; FAILS=$((FAILS + 1)); }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds (its output is shown when not)
check() {
	d=$1; shift
	if out=$("$@" 2>&1); then ok "$d"; else fail "$d"; printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'; fi
}
# check_not DESCRIPTION COMMAND...: ok when COMMAND fails
check_not() { d=$1; shift; if "$@" >/dev/null 2>&1; then fail "$d"; else ok "$d"; fi; }
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
# stat_is PATH "owner:group mode"
stat_is() {
	got=$(in_root stat -c '%U:%G %a' "$1" 2>/dev/null || echo missing)
	if [ "$got" = "$2" ]; then ok "$1 is $2"; else fail "$1 is $2 (got: $got)"; fi
}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"

need_tool() { # need_tool COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	say "$1 is missing: apt-get install $2"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >&2 ||
		die "could not install $2 (needed for $1)"
	command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}
need_tool debootstrap debootstrap
need_tool dpkg-deb dpkg

# --- the package under test -------------------------------------------------
if [ $# -ge 1 ]; then
	DEB=$(realpath "$1")
else
	say "no .deb given: packaging/build-deb.sh"
	DEB=$(packaging/build-deb.sh | tail -n 1)
	DEB=$(realpath "$DEB")
fi
[ -f "$DEB" ] || die "no such package: $DEB"
PKG_VERSION=$(dpkg-deb -f "$DEB" Version)
ARCH=$(dpkg-deb -f "$DEB" Architecture)
say "testing $DEB ($PKG_VERSION, $ARCH)"

# --- chroot setup and teardown ------------------------------------------------
unmount_all() {
	for m in "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/proc"; do
		if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m" || true; fi
	done
}
remove_root() {
	unmount_all
	[ -d "$ROOT" ] || return 0
	# Never rm -rf through a live bind mount of the host's /dev.
	if grep -q " $ROOT/" /proc/self/mounts; then
		die "something is still mounted under $ROOT; not removing it"
	fi
	rm -rf "$ROOT"
}
cleanup() {
	rc=$?
	if [ "${KEEP_ROOT:-0}" = 1 ]; then unmount_all; say "kept $ROOT"; else remove_root; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK" "$CACHE"
remove_root

TARBALL=$CACHE/$SUITE-minbase-$ARCH.tar.gz
if [ ! -s "$TARBALL" ]; then
	say "debootstrap --variant=minbase $SUITE from $MIRROR (once; cached as $TARBALL)"
	boot=$WORK/bootstrap
	rm -rf "$boot"
	debootstrap --variant=minbase --arch="$ARCH" --include=systemd \
		"$SUITE" "$boot" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
	chroot "$boot" apt-get clean
	tar -C "$boot" --numeric-owner -czf "$TARBALL.tmp" . || die "could not write $TARBALL"
	mv "$TARBALL.tmp" "$TARBALL"
	rm -rf "$boot"
fi
say "unpacking $TARBALL"
mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner -xzf "$TARBALL"

mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
# No service may start in the chroot (systemd is not running there anyway;
# deb-systemd-invoke also honours policy-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
[ ! -d "$ROOT/run/systemd/system" ] || die "$ROOT/run/systemd/system exists: the chroot would look like a running systemd"

# Everything on disk, minus what changes by itself, to prove that purge
# leaves nothing behind.
snapshot() {
	in_root find / -xdev \
		\( -path /proc -o -path /dev -o -path /tmp -o -path /var/tmp \
		-o -path /var/cache -o -path /var/log -o -path /var/lib/dpkg \
		-o -path /var/lib/apt -o -path /var/lib/systemd/deb-systemd-helper-enabled \
		-o -path /run \) -prune -o -print | sort
}
snapshot >"$WORK/before.txt"

# --- install ----------------------------------------------------------------------
cp "$DEB" "$ROOT/tmp/smsgate.deb"
say "apt-get install /tmp/smsgate.deb (dpkg, with apt for the dependencies)"
if ! in_root apt-get install -y --no-install-recommends /tmp/smsgate.deb >"$WORK/install.log" 2>&1; then
	say "dependencies not in the cached root: apt-get update and retry"
	in_root apt-get update >>"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; die "apt-get update failed"; }
	in_root apt-get install -y --no-install-recommends /tmp/smsgate.deb >>"$WORK/install.log" 2>&1 ||
		{ cat "$WORK/install.log" >&2; die "installing the package failed"; }
fi
check "package installed ($PKG_VERSION)" sh -c "[ \"\$(chroot '$ROOT' dpkg-query -W -f '\${Status} \${Version}' smsgate)\" = 'install ok installed $PKG_VERSION' ]"

say "user, group, files"
check "user smsgate exists" in_root getent passwd smsgate
check "group smsgate exists" in_root getent group smsgate
check "smsgate is a system user (uid < 1000)" sh -c "[ \$(chroot '$ROOT' id -u smsgate) -lt 1000 ]"
check "smsgate's primary group is smsgate" sh -c "[ \"\$(chroot '$ROOT' id -gn smsgate)\" = smsgate ]"
check "smsgate is in dialout" sh -c "chroot '$ROOT' id -nG smsgate | tr ' ' '\n' | grep -qx dialout"
check "smsgate has no login shell" sh -c "chroot '$ROOT' getent passwd smsgate | grep -Eq ':(/usr/sbin/nologin|/sbin/nologin|/bin/false)\$'"
stat_is /usr/bin/smsgate "root:root 755"
stat_is /usr/bin/smsgate-sim "root:root 755"
stat_is /etc/smsgate "root:root 755"
stat_is /etc/smsgate/smsgate.toml "root:smsgate 640"
stat_is /usr/lib/systemd/system/smsgate.service "root:root 644"
stat_is /usr/lib/sysusers.d/smsgate.conf "root:root 644"
stat_is /usr/lib/udev/rules.d/70-smsgate.rules "root:root 644"
check "conffile registered: /etc/smsgate/smsgate.toml" sh -c "chroot '$ROOT' dpkg-query -W -f '\${Conffiles}' smsgate | grep -q ' /etc/smsgate/smsgate.toml '"
for f in /usr/share/man/man1/smsgate.1.gz /usr/share/bash-completion/completions/smsgate \
	/usr/share/zsh/vendor-completions/_smsgate /usr/share/fish/vendor_completions.d/smsgate.fish \
	/usr/share/doc/smsgate/copyright /usr/share/doc/smsgate/changelog.Debian.gz \
	/usr/share/doc/smsgate/README.md /usr/share/doc/smsgate/examples/smsgate.toml \
	/usr/share/doc/smsgate/examples/demo.toml; do
	check "$f present" test -s "$ROOT$f"
done
check "the unit is not enabled by the package (the technician enables it)" \
	sh -c "! ls '$ROOT'/etc/systemd/system/*.wants/smsgate.service 2>/dev/null | grep -q ."
check "nothing started: no /var/lib/smsgate yet" test ! -e "$ROOT/var/lib/smsgate"
check "smsgate --version runs in bookworm" in_root smsgate --version
check "smsgate-sim --help runs in bookworm" in_root smsgate-sim --help
check "smsgate-sim has its manual page" test -s "$ROOT/usr/share/man/man1/smsgate-sim.1.gz"
check "smsgate check-config /etc/smsgate/smsgate.toml (as root)" \
	in_root smsgate check-config /etc/smsgate/smsgate.toml
check "smsgate check-config /etc/smsgate/smsgate.toml (as the smsgate user)" \
	in_root setpriv --reuid=smsgate --regid=smsgate --init-groups smsgate check-config /etc/smsgate/smsgate.toml
check_not "other users cannot read /etc/smsgate/smsgate.toml" \
	in_root setpriv --reuid=nobody --regid=nogroup --clear-groups cat /etc/smsgate/smsgate.toml
check "systemd-analyze verify on the installed unit" \
	in_root systemd-analyze verify --man=no /usr/lib/systemd/system/smsgate.service

# --- upgrade ----------------------------------------------------------------------
# The same package with a bumped version, made by rewriting its control file.
# rebuild_deb VERSION CHANGE_DEFAULT(0|1) OUT
rebuild_deb() {
	x=$WORK/repack
	rm -rf "$x"
	dpkg-deb -R "$DEB" "$x"
	sed -i "s/^Version: .*/Version: $1/" "$x/DEBIAN/control"
	if [ "$2" = 1 ]; then
		printf '\n# (install test: a new packaged default)\n' >>"$x/etc/smsgate/smsgate.toml"
	fi
	dpkg-deb --root-owner-group -b "$x" "$3" >/dev/null
	rm -rf "$x"
}
EDIT='# edited by the install test: must survive upgrades'
printf '\n%s\n' "$EDIT" >>"$ROOT/etc/smsgate/smsgate.toml"
# The daemon ran once: systemd made the state directory (StateDirectory=).
in_root install -d -o smsgate -g smsgate -m 0750 /var/lib/smsgate
in_root sh -c 'echo data > /var/lib/smsgate/smsgate.db && chown smsgate:smsgate /var/lib/smsgate/smsgate.db'

V2=$PKG_VERSION+upgrade1
V3=$PKG_VERSION+upgrade2
rebuild_deb "$V2" 0 "$ROOT/tmp/smsgate-v2.deb"
rebuild_deb "$V3" 1 "$ROOT/tmp/smsgate-v3.deb"

say "upgrade to $V2 (packaged default unchanged)"
if in_root dpkg -i /tmp/smsgate-v2.deb </dev/null >"$WORK/upgrade1.log" 2>&1; then
	ok "upgrade to $V2"
else
	fail "upgrade to $V2"; cat "$WORK/upgrade1.log"
fi
check "edited conffile kept after upgrade to $V2" grep -qxF "$EDIT" "$ROOT/etc/smsgate/smsgate.toml"
stat_is /etc/smsgate/smsgate.toml "root:smsgate 640"

say "upgrade to $V3 (packaged default changed; keep the admin's version, as apt -o Dpkg::Options::=--force-confold does)"
if in_root dpkg --force-confold -i /tmp/smsgate-v3.deb </dev/null >"$WORK/upgrade2.log" 2>&1; then
	ok "upgrade to $V3"
else
	fail "upgrade to $V3"; cat "$WORK/upgrade2.log"
fi
check "edited conffile kept after upgrade to $V3" grep -qxF "$EDIT" "$ROOT/etc/smsgate/smsgate.toml"
check "new packaged default offered as smsgate.toml.dpkg-dist" test -f "$ROOT/etc/smsgate/smsgate.toml.dpkg-dist"
stat_is /etc/smsgate/smsgate.toml "root:smsgate 640"
check "data kept across upgrades" test -f "$ROOT/var/lib/smsgate/smsgate.db"
check "postinst try-restarts the service on upgrade (when systemd runs)" \
	grep -q 'deb-systemd-invoke try-restart smsgate.service' "$ROOT/var/lib/dpkg/info/smsgate.postinst"
check "smsgate check-config still passes after the upgrades" \
	in_root smsgate check-config /etc/smsgate/smsgate.toml

# --- remove ---------------------------------------------------------------------
say "dpkg --remove smsgate"
if in_root dpkg --remove smsgate >"$WORK/remove.log" 2>&1; then ok "remove"; else fail "remove"; cat "$WORK/remove.log"; fi
check "binary gone after remove" test ! -e "$ROOT/usr/bin/smsgate"
check "unit gone after remove" test ! -e "$ROOT/usr/lib/systemd/system/smsgate.service"
check "data kept after remove (/var/lib/smsgate/smsgate.db)" test -f "$ROOT/var/lib/smsgate/smsgate.db"
check "config kept after remove (/etc/smsgate/smsgate.toml)" grep -qxF "$EDIT" "$ROOT/etc/smsgate/smsgate.toml"
check "package state is config-files" sh -c "chroot '$ROOT' dpkg-query -W -f '\${Status}' smsgate | grep -q 'config-files'"

# --- purge ----------------------------------------------------------------------
say "dpkg --purge smsgate"
if in_root dpkg --purge smsgate >"$WORK/purge.log" 2>&1; then ok "purge"; else fail "purge"; cat "$WORK/purge.log"; fi
check "no /etc/smsgate after purge" test ! -e "$ROOT/etc/smsgate"
check "no /var/lib/smsgate after purge" test ! -e "$ROOT/var/lib/smsgate"
check_not "no stat override left after purge" in_root dpkg-statoverride --list /etc/smsgate/smsgate.toml
check_not "package unknown to dpkg after purge" in_root dpkg-query -W -f '${Status}' smsgate
check "the smsgate user stays after purge (by design)" in_root getent passwd smsgate

rm -f "$ROOT"/tmp/smsgate*.deb
# apt marked the dependencies it pulled in (e.g. procps) as automatic: drop
# them too, so that the file lists compare smsgate alone.
in_root apt-get autoremove --purge -y >"$WORK/autoremove.log" 2>&1 ||
	{ cat "$WORK/autoremove.log"; fail "apt-get autoremove --purge"; }
snapshot >"$WORK/after.txt"
# Expected differences: the user and group in the account databases.
leftovers=$(comm -13 "$WORK/before.txt" "$WORK/after.txt" |
	grep -Ev '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$' || true)
if [ -z "$leftovers" ]; then
	ok "purge leaves no file behind"
else
	fail "purge left files behind:"; printf '  %s\n' $leftovers
fi
missing=$(comm -23 "$WORK/before.txt" "$WORK/after.txt" |
	grep -Ev '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$' || true)
if [ -z "$missing" ]; then
	ok "install, upgrades, remove and purge deleted nothing that was there before"
else
	fail "files of the base system are gone:"; printf '  %s\n' $missing
fi

echo
if [ "$FAILS" -eq 0 ]; then
	say "PASS ($DEB)"
else
	say "$FAILS check(s) FAILED ($DEB)"
	exit 1
fi
