//! Bytes a peer server sends on a media channel, in pieces cut by `u16 LE` lengths as the
//! transport delivers them, read both as the side that did not dial (openings: requests and
//! callbacks) and as the asking side
//! (messages). Nothing may panic; the reader holds at most one message of the bound and what
//! one push added; every message decoded encodes back to bytes that decode to the same.
#![no_main]

use hive_fuzz::reader::Reader;
use hive_media::relay::{self, Message, MESSAGE_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut as_answerer = relay::Reader::new();
    let mut as_asker = relay::Reader::new();
    let mut input = Reader::new(data);
    let (mut requests_done, mut messages_done) = (false, false);
    while !input.is_empty() {
        let piece = input.bytes();
        if !requests_done {
            as_answerer.push(&piece);
            loop {
                match as_answerer.next_opening() {
                    Ok(Some(opening)) => {
                        let mut bytes = bytes::BytesMut::new();
                        opening.encode(&mut bytes);
                        let mut again = relay::Reader::new();
                        again.push(&bytes);
                        let decoded = again.next_opening().expect("our encoding decodes");
                        assert_eq!(decoded.as_ref(), Some(&opening));
                    }
                    Ok(None) => break,
                    Err(_) => {
                        requests_done = true; // the channel would be closed here
                        break;
                    }
                }
            }
            assert!(as_answerer.buffered() <= MESSAGE_MAX + 4 + piece.len());
        }
        if !messages_done {
            as_asker.push(&piece);
            loop {
                match as_asker.next_message() {
                    Ok(Some(message)) => {
                        let mut bytes = bytes::BytesMut::new();
                        message.encode(&mut bytes);
                        let mut again = relay::Reader::new();
                        again.push(&bytes);
                        let decoded = again.next_message().expect("our encoding decodes");
                        if !matches!(message, Message::Info { .. }) {
                            // Info keeps only the parameter sets it knows; the rest round-trips.
                            assert_eq!(decoded.as_ref(), Some(&message));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        messages_done = true;
                        break;
                    }
                }
            }
            assert!(as_asker.buffered() <= MESSAGE_MAX + 4 + piece.len());
        }
    }
});
