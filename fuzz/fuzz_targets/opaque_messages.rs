//! OPAQUE logins (`hive_core::login`) whose stored record and messages (KE1, KE2, KE3, the sealed
//! offer) fuzz input changes: never a panic, the untouched login succeeds, and a changed
//! message, wrong password, relayed channel or unknown user never logs in (see
//! `hive_fuzz::opaque`).
#![no_main]

use hive_fuzz::opaque::{run, Transcript};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    run(&Transcript::decode(data));
});
