//! RTP packets from a camera (or a peer relaying one): cut from fuzz input by a `u16 LE` length and
//! fed to an H.264 and an H.265 depacketizer. Nothing may panic, every access unit is a valid
//! run of length-prefixed NAL units within the bound, and what a depacketizer holds stays within
//! it too.
#![no_main]

use hive_fuzz::reader::Reader;
use hive_media::frame::Codec;
use hive_media::nal;
use hive_media::rtp::{Depacketizer, ACCESS_UNIT_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut depacketizers = [Depacketizer::new(Codec::H264), Depacketizer::new(Codec::H265)];
    let mut input = Reader::new(data);
    while !input.is_empty() {
        let packet = input.bytes();
        for d in &mut depacketizers {
            if let Ok(Some(unit)) = d.push(&packet) {
                assert!(unit.data.len() <= ACCESS_UNIT_MAX, "{} bytes", unit.data.len());
                let nals = nal::split_length_prefixed(&unit.data).expect("units are well formed");
                assert!(nals.iter().all(|n| !n.is_empty()));
            }
            assert!(d.buffered_bytes() <= ACCESS_UNIT_MAX);
        }
    }
});
