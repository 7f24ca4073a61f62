#!/usr/bin/env bash
# The whole test suite, as CI runs it. On a fresh Debian machine it first
# installs the tools the tests drive (a test never skips because a tool is
# missing: it fails and says which one).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, by the command they provide.
declare -A tools=(
  [promtool]=prometheus
  [gammu]=gammu
  # libfaketime: tests/faults_process.rs steps the daemon's wall clock.
  [faketime]=faketime
)
missing=()
for cmd in "${!tools[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${tools[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Stoplight Prism (npm registry), the mock server generated from Twilio's
# OpenAPI description that tests/twilio_openapi.rs checks requests against;
# kept under target/, never in the repository.
prism=target/tools/prism/node_modules/.bin/prism
if [ ! -x "$prism" ]; then
  command -v npm >/dev/null 2>&1 || {
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: npm"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm
  }
  echo "installing: @stoplight/prism-cli@5 under target/tools/prism"
  npm install --prefix target/tools/prism --no-audit --no-fund @stoplight/prism-cli@5
fi
export SMSGATE_PRISM="$PWD/$prism"

# schemathesis (PyPI), which tests/api_conformance.rs runs against the
# daemon's own OpenAPI document; a venv under target/tools, pinned to one
# major version (its CLI and checks change between majors).
schemathesis=target/tools/schemathesis/bin/schemathesis
if [ ! -x "$schemathesis" ]; then
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || {
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: python3-venv"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
  }
  echo "installing: schemathesis 4 under target/tools/schemathesis"
  rm -rf target/tools/schemathesis
  python3 -m venv target/tools/schemathesis
  target/tools/schemathesis/bin/pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
export SMSGATE_SCHEMATHESIS="$PWD/$schemathesis"

# Every crate of the workspace: the daemon, smsgate-proto, smsgate-sim.
cargo test --workspace --locked

# Fuzzing: every target of fuzz/ for 20 s from its committed corpus
# (docs/fuzzing.md). cargo-fuzz comes from crates.io and runs on nightly.
cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
fuzz/run-all.sh

# The Debian package: build, lintian, systemd-analyze, install test in a
# bookworm chroot (it installs lintian and debootstrap itself).
if [ "$(id -u)" -eq 0 ]; then
  packaging/check.sh
else
  sudo packaging/check.sh
fi
