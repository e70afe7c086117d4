//! SNTP (RFC 4330; NTPv4 client mode): one request, one validated reply.
//!
//! The request carries a random transmit timestamp as a nonce; a reply counts only if it
//! echoes that nonce as its origin timestamp, so a stray or spoofed datagram is refused.
//! The local stamps come from the caller's monotonic clock, never from the wall clock, so the
//! result is an offset between that monotonic clock and the server's time.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use thiserror::Error;
use tokio::net::UdpSocket;

/// Length of an NTP header without extension fields or MAC.
pub const HEADER_LEN: usize = 48;
/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;
/// Highest stratum of a synchronised server; 16 means unsynchronised.
pub const STRATUM_MAX: u8 = 15;
const VERSION: u8 = 4;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
const LEAP_ALARM: u8 = 3;
/// Largest datagram read: a reply with extension fields must not be truncated into garbage.
const DATAGRAM_LEN_MAX: usize = 1500;

/// Why an SNTP exchange gave no usable time.
#[derive(Debug, Error)]
pub enum SntpError {
    /// The datagram is shorter than an NTP header.
    #[error("reply of {len} bytes is shorter than an NTP header ({HEADER_LEN})")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The datagram is not in server mode (4).
    #[error("not a server reply: mode {mode}")]
    NotServerReply {
        /// Its mode.
        mode: u8,
    },
    /// Stratum 0: the server refuses service (kiss-o'-death); its code says why.
    #[error("kiss-o'-death from the server, code {:?}", String::from_utf8_lossy(code))]
    KissOfDeath {
        /// The four ASCII characters of the reference id, e.g. `RATE` or `DENY`.
        code: [u8; 4],
    },
    /// Stratum above 15: the server has no time to give.
    #[error("the server is unsynchronised (stratum {stratum})")]
    Unsynchronised {
        /// Its stratum.
        stratum: u8,
    },
    /// Leap indicator 3: the server's clock is not synchronised.
    #[error("the server's leap indicator is 3 (alarm: clock not synchronised)")]
    LeapAlarm,
    /// The origin timestamp is not our request's transmit timestamp: not an answer to us.
    #[error("the reply does not echo the request's transmit timestamp")]
    OriginMismatch,
    /// The server's transmit timestamp is zero: no time in it.
    #[error("the reply's transmit timestamp is zero")]
    ZeroTransmitTime,
    /// No reply arrived within the timeout.
    #[error("no reply within the timeout")]
    Timeout,
    /// The socket failed (including ICMP "port unreachable" reported on a later receive).
    #[error("NTP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// An NTP timestamp: seconds since 1900 in the high 32 bits, a binary fraction in the low.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// A random, non-zero value: the nonce of one request.
    pub fn random_nonce() -> NtpTimestamp {
        NtpTimestamp(rand::random::<u64>().max(1))
    }

    /// Microseconds since the Unix epoch (0 for times before it).
    ///
    /// Era 0 (1900–2036) has the top bit of the seconds set from 1968 on; RFC 4330 §3 reads a
    /// clear top bit as era 1 (2036–2104), so the conversion stays right past 2036.
    pub fn to_unix_us(self) -> u64 {
        let seconds = self.0 >> 32;
        let fraction = self.0 & 0xFFFF_FFFF;
        let era_s = if seconds & 0x8000_0000 == 0 { 1u64 << 32 } else { 0 };
        let unix_s = (seconds + era_s).saturating_sub(NTP_UNIX_OFFSET_S);
        unix_s * 1_000_000 + ((fraction * 1_000_000) >> 32)
    }
}

/// A decoded and validated server reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerReply {
    /// Leap indicator (0 none, 1 or 2 a leap second at the end of the day).
    pub leap: u8,
    /// NTP version of the reply.
    pub version: u8,
    /// Stratum, 1..=15.
    pub stratum: u8,
    /// Round-trip delay from the server to its reference clock.
    pub root_delay_us: u64,
    /// Dispersion from the server to its reference clock.
    pub root_dispersion_us: u64,
    /// Reference id (an IPv4 address or four ASCII characters).
    pub reference_id: [u8; 4],
    /// When the server received the request.
    pub receive: NtpTimestamp,
    /// When the server sent the reply.
    pub transmit: NtpTimestamp,
}

/// A client-mode request whose transmit timestamp is `nonce`.
pub fn encode_request(nonce: NtpTimestamp) -> [u8; HEADER_LEN] {
    let mut packet = [0u8; HEADER_LEN];
    packet[0] = (VERSION << 3) | MODE_CLIENT;
    packet[40..48].copy_from_slice(&nonce.0.to_be_bytes());
    packet
}

/// Decodes `datagram` as the reply to the request carrying `nonce`, refusing anything that is
/// not a synchronised server's answer to it.
pub fn decode_reply(datagram: &[u8], nonce: NtpTimestamp) -> Result<ServerReply, SntpError> {
    let header: &[u8; HEADER_LEN] = datagram
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(SntpError::TooShort { len: datagram.len() })?;
    let u32_at = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let u64_at = |at: usize| u64::from(u32_at(at)) << 32 | u64::from(u32_at(at + 4));
    let leap = header[0] >> 6;
    let version = (header[0] >> 3) & 0b111;
    let mode = header[0] & 0b111;
    let stratum = header[1];
    let reference_id = [header[12], header[13], header[14], header[15]];
    if mode != MODE_SERVER {
        return Err(SntpError::NotServerReply { mode });
    }
    // The origin first: a kiss-o'-death or alarm that does not answer our request may be
    // spoofed and must not stop the client.
    if NtpTimestamp(u64_at(24)) != nonce {
        return Err(SntpError::OriginMismatch);
    }
    if stratum == 0 {
        return Err(SntpError::KissOfDeath { code: reference_id });
    }
    if stratum > STRATUM_MAX {
        return Err(SntpError::Unsynchronised { stratum });
    }
    if leap == LEAP_ALARM {
        return Err(SntpError::LeapAlarm);
    }
    let transmit = NtpTimestamp(u64_at(40));
    if transmit.0 == 0 {
        return Err(SntpError::ZeroTransmitTime);
    }
    let short_us = |at: usize| (u64::from(u32_at(at)) * 1_000_000) >> 16;
    Ok(ServerReply {
        leap,
        version,
        stratum,
        root_delay_us: short_us(4),
        root_dispersion_us: short_us(8),
        reference_id,
        receive: NtpTimestamp(u64_at(32)),
        transmit,
    })
}

/// One exchange's four timestamps: two from the caller's monotonic clock, two from the
/// server's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpReply {
    /// Local monotonic time just before the request was sent (t1).
    pub sent_mono_us: u64,
    /// Server time when it received the request (t2), µs since the Unix epoch.
    pub server_received_unix_us: u64,
    /// Server time when it sent the reply (t3), µs since the Unix epoch.
    pub server_sent_unix_us: u64,
    /// Local monotonic time right when the reply was read (t4).
    pub received_mono_us: u64,
    /// The server's stratum.
    pub stratum: u8,
    /// The server's root delay.
    pub root_delay_us: u64,
    /// The server's root dispersion.
    pub root_dispersion_us: u64,
}

impl NtpReply {
    /// Server time minus local monotonic time at the exchange's midpoint,
    /// `((t2 − t1) + (t3 − t4)) / 2`: local monotonic µs plus this is the server's Unix µs.
    pub fn offset_us(&self) -> i64 {
        let t1 = i128::from(self.sent_mono_us);
        let t2 = i128::from(self.server_received_unix_us);
        let t3 = i128::from(self.server_sent_unix_us);
        let t4 = i128::from(self.received_mono_us);
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
    }

    /// Time on the wire both ways, `(t4 − t1) − (t3 − t2)`: the bound on the offset's error
    /// is half of it.
    pub fn round_trip_us(&self) -> u64 {
        let local_us = self.received_mono_us.saturating_sub(self.sent_mono_us);
        let server_us = self.server_sent_unix_us.saturating_sub(self.server_received_unix_us);
        local_us.saturating_sub(server_us)
    }
}

/// Asks `server` for the time once, from an ephemeral UDP port; `mono_us` is the caller's
/// monotonic clock. Fails with [`SntpError::Timeout`] when no reply came within `timeout`,
/// and with the matching error when the first reply is not a valid answer.
pub async fn query(
    server: SocketAddr,
    mono_us: &(dyn Fn() -> u64 + Sync),
    timeout: Duration,
) -> Result<NtpReply, SntpError> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(server).await?;
    let nonce = NtpTimestamp::random_nonce();
    let request = encode_request(nonce);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut datagram = [0u8; DATAGRAM_LEN_MAX];
    let sent_mono_us = mono_us();
    let exchange = async {
        socket.send(&request).await?;
        let len = socket.recv(&mut datagram).await?;
        // Stamped before decoding: the receive time is when the datagram was read.
        Ok::<_, std::io::Error>((len, mono_us()))
    };
    let (len, received_mono_us) =
        tokio::time::timeout_at(deadline, exchange).await.map_err(|_| SntpError::Timeout)??;
    let reply = decode_reply(datagram.get(..len).unwrap_or(&[]), nonce)?;
    Ok(NtpReply {
        sent_mono_us,
        server_received_unix_us: reply.receive.to_unix_us(),
        server_sent_unix_us: reply.transmit.to_unix_us(),
        received_mono_us,
        stratum: reply.stratum,
        root_delay_us: reply.root_delay_us,
        root_dispersion_us: reply.root_dispersion_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NTP seconds of 2023-11-14T22:13:20Z (Unix 1_700_000_000).
    const NTP_S_2023: u64 = 1_700_000_000 + NTP_UNIX_OFFSET_S;

    struct Reply {
        leap: u8,
        mode: u8,
        stratum: u8,
        reference_id: [u8; 4],
        origin: u64,
        receive: u64,
        transmit: u64,
    }

    impl Reply {
        fn good(nonce: NtpTimestamp) -> Reply {
            Reply {
                leap: 0,
                mode: MODE_SERVER,
                stratum: 2,
                reference_id: *b"GPS\0",
                origin: nonce.0,
                receive: NTP_S_2023 << 32,
                transmit: NTP_S_2023 << 32 | 0x8000_0000,
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut p = vec![0u8; HEADER_LEN];
            p[0] = self.leap << 6 | VERSION << 3 | self.mode;
            p[1] = self.stratum;
            p[4..8].copy_from_slice(&0x0001_8000u32.to_be_bytes()); // 1.5 s
            p[8..12].copy_from_slice(&0x0000_4000u32.to_be_bytes()); // 0.25 s
            p[12..16].copy_from_slice(&self.reference_id);
            p[24..32].copy_from_slice(&self.origin.to_be_bytes());
            p[32..40].copy_from_slice(&self.receive.to_be_bytes());
            p[40..48].copy_from_slice(&self.transmit.to_be_bytes());
            p
        }
    }

    #[test]
    fn a_request_is_version_4_client_mode_carrying_the_nonce() {
        let nonce = NtpTimestamp(0x0123_4567_89ab_cdef);
        let request = encode_request(nonce);
        assert_eq!(request[0], 0x23);
        assert_eq!(&request[40..48], &nonce.0.to_be_bytes());
        assert!(request[1..40].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_valid_reply_decodes_to_unix_microseconds() {
        let nonce = NtpTimestamp(42);
        let reply = decode_reply(&Reply::good(nonce).bytes(), nonce).unwrap();
        assert_eq!(reply.stratum, 2);
        assert_eq!(reply.version, 4);
        assert_eq!(reply.root_delay_us, 1_500_000);
        assert_eq!(reply.root_dispersion_us, 250_000);
        assert_eq!(reply.receive.to_unix_us(), 1_700_000_000_000_000);
        assert_eq!(reply.transmit.to_unix_us(), 1_700_000_000_500_000);
    }

    #[test]
    fn a_reply_with_extension_fields_still_decodes() {
        let nonce = NtpTimestamp(42);
        let mut bytes = Reply::good(nonce).bytes();
        bytes.extend_from_slice(&[0u8; 20]);
        assert!(decode_reply(&bytes, nonce).is_ok());
    }

    #[test]
    fn timestamps_after_2036_are_read_as_era_1() {
        // Unix second 2_208_988_800 (in 2039) lies in NTP era 1.
        let unix_s = 2_208_988_800u64;
        let ntp_s = unix_s + NTP_UNIX_OFFSET_S - (1 << 32);
        assert_eq!(NtpTimestamp(ntp_s << 32).to_unix_us(), unix_s * 1_000_000);
    }

    #[test]
    fn each_bad_reply_gets_its_own_error() {
        let nonce = NtpTimestamp(7);
        let decode = |edit: fn(&mut Reply)| {
            let mut reply = Reply::good(nonce);
            edit(&mut reply);
            decode_reply(&reply.bytes(), nonce).unwrap_err()
        };
        assert!(matches!(decode_reply(&[0x24; 47], nonce), Err(SntpError::TooShort { len: 47 })));
        assert!(matches!(decode(|r| r.mode = MODE_CLIENT), SntpError::NotServerReply { mode: 3 }));
        assert!(matches!(decode(|r| r.origin = 8), SntpError::OriginMismatch));
        assert!(matches!(
            decode(|r| {
                r.stratum = 0;
                r.reference_id = *b"RATE";
            }),
            SntpError::KissOfDeath { code } if &code == b"RATE"
        ));
        assert!(matches!(decode(|r| r.stratum = 16), SntpError::Unsynchronised { stratum: 16 }));
        assert!(matches!(decode(|r| r.leap = 3), SntpError::LeapAlarm));
        assert!(matches!(decode(|r| r.transmit = 0), SntpError::ZeroTransmitTime));
    }

    #[test]
    fn a_kiss_of_death_that_does_not_answer_our_request_is_an_origin_mismatch() {
        let nonce = NtpTimestamp(7);
        let mut reply = Reply::good(NtpTimestamp(99));
        reply.stratum = 0;
        assert!(matches!(decode_reply(&reply.bytes(), nonce), Err(SntpError::OriginMismatch)));
    }

    #[test]
    fn offset_and_round_trip_follow_the_four_timestamps() {
        // Server 1 s ahead of the local clock's epoch, 10 ms each way, 2 ms in the server.
        let reply = NtpReply {
            sent_mono_us: 5_000_000,
            server_received_unix_us: 1_000_000_000_000 + 5_010_000,
            server_sent_unix_us: 1_000_000_000_000 + 5_012_000,
            received_mono_us: 5_022_000,
            stratum: 3,
            root_delay_us: 0,
            root_dispersion_us: 0,
        };
        assert_eq!(reply.offset_us(), 1_000_000_000_000);
        assert_eq!(reply.round_trip_us(), 20_000);
    }

    #[test]
    fn offset_saturates_instead_of_overflowing() {
        let reply = NtpReply {
            sent_mono_us: 0,
            server_received_unix_us: u64::MAX,
            server_sent_unix_us: u64::MAX,
            received_mono_us: 0,
            stratum: 1,
            root_delay_us: 0,
            root_dispersion_us: 0,
        };
        assert_eq!(reply.offset_us(), i64::MAX);
        assert_eq!(reply.round_trip_us(), 0);
    }

    proptest! {
        #[test]
        fn decoding_any_datagram_never_panics(
            datagram in proptest::collection::vec(any::<u8>(), 0..=1500),
            nonce in any::<u64>(),
        ) {
            if let Ok(reply) = decode_reply(&datagram, NtpTimestamp(nonce)) {
                let _ = reply.receive.to_unix_us();
                let _ = reply.transmit.to_unix_us();
            }
        }

        #[test]
        fn any_timestamp_converts_without_panicking(raw in any::<u64>()) {
            let _ = NtpTimestamp(raw).to_unix_us();
        }
    }
}
