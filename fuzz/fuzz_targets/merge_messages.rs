//! Merges played against a node by another system, as remote (another administrator logs in)
//! and as initiator (the node's own merge): arbitrary `MergeMsg`s with arbitrary bytes as
//! KE1/KE2/KE3, offer and outcome, mixed with genuine OPAQUE steps that get past the login.
//!
//! Never a panic; a node whose merge login never succeeded keeps its identity, system, secret
//! and store; a merge link carries only merge messages and never the secret in the clear (see
//! `hive_fuzz::merge`).
#![no_main]

use hive_fuzz::merge::{run, Script};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    run(&Script::decode(data));
});
