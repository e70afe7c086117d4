//! A media channel as two halves that carry relay messages: the writer seals what it sends in
//! Noise messages of at most [`CHUNK_PLAIN_MAX`] bytes, the reader opens each message and
//! splits the plaintext into relay messages. Every byte is encrypted and authenticated, as
//! between servers everywhere else.

use crate::driver::channel::{self, ChannelError, Transport, CHUNK_PLAIN_MAX};
use crate::driver::MediaStream;
use bytes::BytesMut;
use hive_media::relay::{self, Message, Opening, RelayError, Request};
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

/// Largest Noise message on the wire.
const SEALED_MAX: usize = 65_535;

/// Why a media channel broke.
#[derive(Debug, Error)]
pub enum SealedError {
    /// The connection or its encryption failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The peer sent something that is not a relay message.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The peer closed the connection.
    #[error("the peer closed the media channel")]
    Closed,
}

/// The sending half.
pub struct SealedWriter {
    wr: WriteHalf<Box<dyn MediaStream>>,
    transport: Arc<Transport>,
    nonce: u64,
    plain: BytesMut,
    sealed: Vec<u8>,
}

/// The receiving half.
pub struct SealedReader {
    rd: ReadHalf<Box<dyn MediaStream>>,
    transport: Arc<Transport>,
    nonce: u64,
    message: Vec<u8>,
    plain: Vec<u8>,
    reader: relay::Reader,
}

/// Splits an established media channel into its halves.
pub fn split(stream: Box<dyn MediaStream>, transport: Transport) -> (SealedReader, SealedWriter) {
    let (send_nonce, recv_nonce) = (transport.send_nonce, transport.recv_nonce);
    let transport = Arc::new(transport);
    let (rd, wr) = tokio::io::split(stream);
    let reader = SealedReader {
        rd,
        transport: transport.clone(),
        nonce: recv_nonce,
        message: Vec::new(),
        plain: Vec::new(),
        reader: relay::Reader::new(),
    };
    let writer = SealedWriter {
        wr,
        transport,
        nonce: send_nonce,
        plain: BytesMut::new(),
        sealed: Vec::new(),
    };
    (reader, writer)
}

impl SealedWriter {
    /// Sends a request.
    pub async fn request(&mut self, request: &Request) -> Result<(), SealedError> {
        request.encode(&mut self.plain);
        self.flush().await
    }

    /// Opens a channel this server dialled back, with the token it was asked with.
    pub async fn callback(&mut self, token: u128) -> Result<(), SealedError> {
        Opening::Callback { token }.encode(&mut self.plain);
        self.flush().await
    }

    /// Queues a message; [`SealedWriter::flush`] sends what is queued in one write.
    pub fn queue(&mut self, message: &Message) {
        message.encode(&mut self.plain);
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.plain.len()
    }

    /// Seals everything queued and writes it.
    pub async fn flush(&mut self) -> Result<(), SealedError> {
        self.sealed.clear();
        for chunk in self.plain.chunks(CHUNK_PLAIN_MAX) {
            self.transport.seal_into(self.nonce, chunk, &mut self.sealed)?;
            self.nonce += 1;
        }
        self.plain.clear();
        self.wr.write_all(&self.sealed).await.map_err(ChannelError::Io)?;
        Ok(())
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), SealedError> {
        self.queue(message);
        self.flush().await
    }
}

impl SealedReader {
    /// Reads and opens one Noise message into the relay reader.
    async fn fill(&mut self) -> Result<(), SealedError> {
        match channel::read_message(&mut self.rd, SEALED_MAX, &mut self.message).await {
            Ok(()) => {}
            Err(ChannelError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(SealedError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        self.plain.clear();
        self.transport.open_into(self.nonce, &self.message, &mut self.plain)?;
        self.nonce += 1;
        self.reader.push(&self.plain);
        Ok(())
    }

    /// The first message of a channel the peer dialled: a request, or a callback.
    pub async fn opening(&mut self) -> Result<Opening, SealedError> {
        loop {
            if let Some(opening) = self.reader.next_opening()? {
                return Ok(opening);
            }
            self.fill().await?;
        }
    }

    /// The request on a channel this server dialled back (the answering side).
    pub async fn request(&mut self) -> Result<Request, SealedError> {
        loop {
            if let Some(request) = self.reader.next_request()? {
                return Ok(request);
            }
            self.fill().await?;
        }
    }

    /// The next message of the flow (the asking side).
    pub async fn message(&mut self) -> Result<Message, SealedError> {
        loop {
            if let Some(message) = self.reader.next_message()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }
}
