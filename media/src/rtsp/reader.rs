//! Reads RTSP requests off a byte stream with a bound on what one request may cost.

use rtsp_types::{Message, ParseError, Request};
use thiserror::Error;

/// The largest RTSP request (headers and body) a server accepts, bytes.
pub const REQUEST_MAX: usize = 16 * 1024;

/// Input that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// A request larger than [`REQUEST_MAX`].
    #[error("request over {REQUEST_MAX} bytes")]
    TooLarge,
    /// Bytes that are not an RTSP request.
    #[error("malformed RTSP request")]
    Malformed,
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A request.
    Request(Request<Vec<u8>>),
    /// An interleaved data frame (the client's RTCP receiver reports), ignored.
    Data,
}

/// Buffers bytes from a client and splits them into requests.
#[derive(Debug, Default)]
pub struct RequestReader {
    buf: Vec<u8>,
}

impl RequestReader {
    /// An empty reader.
    pub fn new() -> RequestReader {
        RequestReader::default()
    }

    /// Takes bytes read from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet taken as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, ReadError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match Message::<Vec<u8>>::parse(&self.buf) {
            Ok((message, consumed)) => {
                self.buf.drain(..consumed);
                match message {
                    Message::Request(request) => Ok(Some(Incoming::Request(request))),
                    Message::Data(_) => Ok(Some(Incoming::Data)),
                    Message::Response(_) => Err(ReadError::Malformed),
                }
            }
            Err(ParseError::Incomplete(_)) if self.buf.len() > REQUEST_MAX => {
                Err(ReadError::TooLarge)
            }
            Err(ParseError::Incomplete(_)) => Ok(None),
            Err(ParseError::Error) => Err(ReadError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_at_their_ends_and_interleaved_data_is_skipped() {
        let mut r = RequestReader::new();
        r.push(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x01\x00\x02ab");
        r.push(b"OPTIONS * RTSP/1.0\r\nCSe");
        assert!(matches!(r.next_message(), Ok(Some(Incoming::Request(_)))));
        assert_eq!(r.next_message(), Ok(Some(Incoming::Data)));
        assert_eq!(r.next_message(), Ok(None));
        r.push(b"q: 2\r\n\r\n");
        assert!(matches!(r.next_message(), Ok(Some(Incoming::Request(_)))));
    }

    #[test]
    fn an_endless_header_is_refused_once_it_passes_the_bound() {
        let mut r = RequestReader::new();
        r.push(b"OPTIONS * RTSP/1.0\r\nX: ");
        r.push(&vec![b'a'; REQUEST_MAX]);
        assert_eq!(r.next_message(), Err(ReadError::TooLarge));
    }

    #[test]
    fn garbage_is_malformed() {
        let mut r = RequestReader::new();
        r.push(b"\x00\x01GET\r\n\r\n");
        assert_eq!(r.next_message(), Err(ReadError::Malformed));
    }
}
