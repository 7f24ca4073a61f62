#!/bin/sh
# Build the Debian package: target/debian/smsgate_<version>-<rev>_<arch>.deb
#
#   packaging/build-deb.sh
#
# 1. cargo build --release -p smsgate -p smsgate-sim
# 2. target/release/smsgate generate-assets target/assets   (man pages, completions)
#    target/release/smsgate-sim generate-man target/assets   (smsgate-sim.1)
# 3. cargo deb --no-build                                    ([package.metadata.deb] in Cargo.toml)
#
# Also writes target/debian/smsgate-dbgsym_<version>-<rev>_<arch>.ddeb (debug symbols).
#
# Installs cargo-deb with `cargo install cargo-deb --locked` when it is missing.
# Prints the path of the .deb on its last line of stdout.
set -eu

cd "$(dirname "$0")/.."

die() { echo "build-deb: error: $*" >&2; exit 1; }
say() { echo "build-deb: $*" >&2; }

command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"

if ! cargo deb --version >/dev/null 2>&1; then
	say "cargo-deb is missing: cargo install cargo-deb --locked"
	cargo install cargo-deb --locked || die "could not install cargo-deb"
	cargo deb --version >/dev/null 2>&1 || die "cargo-deb still not usable after install"
fi

# Files the package needs that other parts of the project own.
for f in README.md config/smsgate.toml config/demo.toml docs/packaging.md \
	packaging/changelog packaging/copyright systemd/smsgate.service; do
	[ -f "$f" ] || die "$f is missing"
done

# The top changelog entry must name the version being packaged
# (cargo-deb makes the Debian version <Cargo version>-1).
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml"
changelog_version=$(sed -n '1s/^smsgate (\([^)]*\)).*/\1/p' packaging/changelog)
[ "$changelog_version" = "$version-1" ] ||
	die "packaging/changelog starts with version '$changelog_version' but Cargo.toml says $version: add an entry for $version-1"

say "cargo build --release -p smsgate -p smsgate-sim"
cargo build --release --locked -p smsgate -p smsgate-sim

say "generating man pages and completions into target/assets"
rm -rf target/assets
target/release/smsgate generate-assets target/assets ||
	die "'smsgate generate-assets target/assets' failed (does src/cli.rs have the hidden generate-assets subcommand?)"
target/release/smsgate-sim generate-man target/assets ||
	die "'smsgate-sim generate-man target/assets' failed"
for f in target/assets/smsgate.1 target/assets/smsgate-sim.1 target/assets/completions/smsgate.bash \
	target/assets/completions/_smsgate target/assets/completions/smsgate.fish; do
	[ -s "$f" ] || die "generate-assets did not write $f"
done

say "cargo deb --no-build"
mkdir -p target/debian
out=$(cargo deb --no-build --output target/debian/) || die "cargo deb failed"
# cargo-deb prints the .ddeb (debug symbols) and the .deb it wrote.
deb=$(printf '%s\n' "$out" | grep '\.deb$' | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not report a .deb (got '$deb')"
say "built $deb"
echo "$deb"
