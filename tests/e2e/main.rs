//! End-to-end tests of the `xspack` binary: CLI contract, exit codes, messages and golden text.
//!
//! Golden files live in `tests/golden/`; refresh them with `just golden`
//! (`EXPECTORATE=overwrite`) and review the diff.

mod bookworm;
mod cli;
mod common;
mod coreos;
mod corpus;
mod docs;
mod errors;
mod examples;
mod faults;
mod formats;
mod guest;
mod guide;
mod hardening;
mod identity;
mod ignition;
mod image;
mod inspect;
mod json;
mod pack;
mod progress;
mod rpmcheck;
mod security;
mod template;
mod verify;
