# xspack: the only entry point for building, testing and checking. CI calls these recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Build every pack in packs/ into dist/.
pack:
    cargo build --release --locked -p xspack-cli
    scripts/pack-all

# Install xspack, its shell completions and man pages under PREFIX (bin/, share/).
install prefix="/usr/local":
    cargo build --release --locked -p xspack-cli
    install -Dm755 target/release/xspack "{{prefix}}/bin/xspack"
    mkdir -p "{{prefix}}/share/bash-completion/completions" "{{prefix}}/share/zsh/site-functions" "{{prefix}}/share/fish/vendor_completions.d" "{{prefix}}/share/man"
    target/release/xspack completions bash > "{{prefix}}/share/bash-completion/completions/xspack"
    target/release/xspack completions zsh > "{{prefix}}/share/zsh/site-functions/_xspack"
    target/release/xspack completions fish > "{{prefix}}/share/fish/vendor_completions.d/xspack.fish"
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)" target/release/xspack -q man --force -o "{{prefix}}/share/man/man1"

# Install missing oracle tools, make the cached fixtures, then run the whole test suite.
test: oracles fixtures
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run --workspace --locked --no-fail-fast && cargo test --workspace --locked --doc; \
    else \
        cargo test --workspace --locked --no-fail-fast; \
    fi
    scripts/fuzz 10

# Fuzz each parser of untrusted input for SECONDS (cargo-fuzz, installed if missing), or only TARGETS.
fuzz seconds="60" *targets:
    scripts/fuzz {{seconds}} {{targets}}

# Formatting, lints with warnings denied, and documentation.
check:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
    RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --document-private-items --locked

# Make the Debian root fixtures the tests and benchmarks use, once per machine (needs root).
fixtures:
    scripts/fixtures/bookworm >/dev/null
    scripts/fixtures/bookworm-guest >/dev/null

# apt-get install the Debian tools the tests use as oracles (as root), or name what is missing.
oracles:
    scripts/oracles

# Benchmarks, side by side with the baseline tools; results go to target/bench/.
bench:
    cargo build --release --locked -p xspack-cli -p xspack-bench
    target/release/xspack-bench

# Rewrite the golden files from the current output; review the diff before committing.
golden:
    EXPECTORATE=overwrite cargo test --workspace --locked

# The CI matrix: every pack under packs/ as one JSON result (name, version, formats, path).
matrix:
    cargo build --release --locked --quiet -p xspack-cli
    target/release/xspack --json pack list packs
