//! License keys: signed channel grants bound to a server's hardware, summed over the system.
//!
//! A key is signed by the vendor (ed25519) and checked offline against the vendor's public key.
//! It counts while a server with its hardware id is in the system, so the totals of merged systems
//! add up (4 + 10 = 14) and a split server takes its keys along. When more cameras record than
//! the system is licensed for, a grace period starts; after it, a deterministic choice of cameras
//! stops, the same on every server.

use crate::ids::{CameraId, HardwareId, IdError};
use crate::instant::WallMs;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use thiserror::Error;

/// Domain separation for the signed message, so a license signature means nothing elsewhere.
const SIGNED_DOMAIN: &[u8] = b"hive-license-v1\0";

/// Prefix of the text form of a license key; the digit is the format version.
pub const TEXT_PREFIX: &str = "HIVE1-";

/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Default grace period before excess cameras stop: 30 days.
pub const GRACE_MS_DEFAULT: u64 = 30 * 24 * 60 * 60 * 1000;

/// Bytes of the fixed-width fields in the encoding: id, channels, hardware id length, issued time.
const FIXED_FIELDS_LEN: usize = 16 + 4 + 8 + 8;

/// A license key, chosen by the vendor when issuing it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LicenseId(pub u128);

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form like the other ids; the full id is in Display.
        write!(f, "lic-{:08x}", (self.0 & 0xffff_ffff) as u32)
    }
}

impl std::str::FromStr for LicenseId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        u128::from_str_radix(s, 16).map(LicenseId).map_err(|_| IdError::NotHex(s.to_owned()))
    }
}

/// A vendor-signed grant of `channels` recording cameras to the server with `hardware_id`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LicenseKey {
    /// Which key this is; copies of one key count once.
    pub id: LicenseId,
    /// Cameras this key lets the system record.
    pub channels: u32,
    /// The server hardware the key is bound to.
    pub hardware_id: HardwareId,
    /// When the vendor issued the key, in ms since the Unix epoch.
    pub issued_ms: u64,
    /// The vendor's ed25519 signature over [`LicenseKey::signed_message`].
    #[serde(with = "signature_bytes")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl LicenseKey {
    /// The bytes the vendor signs: a domain prefix, then the fields in their canonical encoding.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNED_DOMAIN.len() + self.fields_len());
        out.extend_from_slice(SIGNED_DOMAIN);
        self.encode_fields(&mut out);
        out
    }

    /// Checks the signature against the vendor's public key.
    pub fn verify(&self, vendor: &VerifyingKey) -> Result<(), LicenseError> {
        let signature = Signature::from_bytes(&self.signature);
        // Strict verification refuses malleable and small-order forms, so one key has one
        // valid signature.
        vendor
            .verify_strict(&self.signed_message(), &signature)
            .map_err(|_| LicenseError::BadSignature { id: self.id })
    }

    /// The text form for people and the command line: `HIVE1-` and hexadecimal digits.
    pub fn to_text(&self) -> String {
        let mut bytes = Vec::with_capacity(self.fields_len() + SIGNATURE_LEN);
        self.encode_fields(&mut bytes);
        bytes.extend_from_slice(&self.signature);
        let mut text = String::with_capacity(TEXT_PREFIX.len() + 2 * bytes.len());
        text.push_str(TEXT_PREFIX);
        for byte in bytes {
            text.push(HEX_DIGITS[usize::from(byte >> 4)] as char);
            text.push(HEX_DIGITS[usize::from(byte & 0x0f)] as char);
        }
        text
    }

    /// Reads the text form written by [`LicenseKey::to_text`]; surrounding whitespace is ignored.
    ///
    /// The signature is not checked here; call [`LicenseKey::verify`].
    pub fn from_text(text: &str) -> Result<LicenseKey, LicenseError> {
        let malformed = |reason| LicenseError::MalformedText { reason };
        let digits = text.trim().strip_prefix(TEXT_PREFIX).ok_or(malformed(TextError::Prefix))?;
        let bytes = decode_hex(digits).map_err(malformed)?;
        decode_key(&bytes).map_err(malformed)
    }

    fn fields_len(&self) -> usize {
        FIXED_FIELDS_LEN + self.hardware_id.0.len()
    }

    /// Appends the fields, big-endian, with the hardware id prefixed by its length in bytes.
    fn encode_fields(&self, out: &mut Vec<u8>) {
        let hardware_id = self.hardware_id.0.as_bytes();
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.channels.to_be_bytes());
        // usize fits in u64 on every supported target, so the length is never truncated.
        out.extend_from_slice(&(hardware_id.len() as u64).to_be_bytes());
        out.extend_from_slice(hardware_id);
        out.extend_from_slice(&self.issued_ms.to_be_bytes());
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for LicenseKey {
    type Err = LicenseError;
    fn from_str(s: &str) -> Result<Self, LicenseError> {
        LicenseKey::from_text(s)
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

fn decode_hex(digits: &str) -> Result<Vec<u8>, TextError> {
    let pairs = digits.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(TextError::OddLength);
    }
    let nibble = |index: usize, digit: u8| match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(TextError::NotHex { index: TEXT_PREFIX.len() + index }),
    };
    pairs
        .enumerate()
        .map(|(i, pair)| Ok((nibble(2 * i, pair[0])? << 4) | nibble(2 * i + 1, pair[1])?))
        .collect()
}

/// Reads fields and signature from `bytes`, which must hold exactly one key.
fn decode_key(bytes: &[u8]) -> Result<LicenseKey, TextError> {
    let mut reader = Reader(bytes);
    let id = LicenseId(u128::from_be_bytes(reader.take_array()?));
    let channels = u32::from_be_bytes(reader.take_array()?);
    let hardware_id_len = u64::from_be_bytes(reader.take_array()?);
    // A length beyond the input is refused before anything is allocated for it.
    let hardware_id_len = usize::try_from(hardware_id_len).map_err(|_| TextError::Truncated)?;
    let hardware_id = reader.take(hardware_id_len)?;
    let hardware_id =
        String::from_utf8(hardware_id.to_vec()).map_err(|_| TextError::HardwareIdNotUtf8)?;
    let issued_ms = u64::from_be_bytes(reader.take_array()?);
    let signature = reader.take_array()?;
    if !reader.0.is_empty() {
        return Err(TextError::TrailingBytes { len: reader.0.len() });
    }
    Ok(LicenseKey { id, channels, hardware_id: HardwareId(hardware_id), issued_ms, signature })
}

/// Reads fields front to back from a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], TextError> {
        if self.0.len() < len {
            return Err(TextError::Truncated);
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], TextError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
}

/// Serde for the 64-byte signature as a byte string (serde derives arrays only up to 32).
mod signature_bytes {
    use super::SIGNATURE_LEN;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(bytes: &[u8; SIGNATURE_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; SIGNATURE_LEN], D::Error> {
        d.deserialize_bytes(SignatureVisitor)
    }

    struct SignatureVisitor;

    impl<'de> Visitor<'de> for SignatureVisitor {
        type Value = [u8; SIGNATURE_LEN];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{SIGNATURE_LEN} signature bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        // Formats without byte strings (JSON) carry the bytes as a sequence of numbers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0; SIGNATURE_LEN];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<u8>()?.is_some() {
                return Err(A::Error::invalid_length(SIGNATURE_LEN + 1, &self));
            }
            Ok(out)
        }
    }
}

/// Issues signed license keys with the vendor's private key (tests, simulator, dev command).
pub struct LicenseIssuer {
    signing_key: SigningKey,
}

impl LicenseIssuer {
    /// The issuer whose ed25519 private key is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        LicenseIssuer { signing_key: SigningKey::from_bytes(&seed) }
    }

    /// The public key servers check this issuer's keys against.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// A key granting `channels` cameras to the server with `hardware_id`, signed by this issuer.
    pub fn issue(
        &self,
        id: LicenseId,
        channels: u32,
        hardware_id: HardwareId,
        issued_ms: u64,
    ) -> LicenseKey {
        let mut key =
            LicenseKey { id, channels, hardware_id, issued_ms, signature: [0; SIGNATURE_LEN] };
        key.signature = self.signing_key.sign(&key.signed_message()).to_bytes();
        key
    }

    /// Checks `key` against `vendor`; the same as [`LicenseKey::verify`].
    pub fn verify(&self, key: &LicenseKey, vendor: &VerifyingKey) -> Result<(), LicenseError> {
        key.verify(vendor)
    }
}

impl fmt::Debug for LicenseIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("LicenseIssuer").field("verifying_key", &self.verifying_key()).finish()
    }
}

/// Why a license key was refused.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum LicenseError {
    /// The signature does not match the key's fields under the vendor's public key.
    #[error("license {id} has no valid vendor signature")]
    BadSignature {
        /// The key as it claims to be.
        id: LicenseId,
    },
    /// The text is not a license key.
    #[error("malformed license key text: {reason}")]
    MalformedText {
        /// What is wrong with it.
        reason: TextError,
    },
}

/// What is wrong with the text of a license key.
#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum TextError {
    /// The text does not start with [`TEXT_PREFIX`].
    #[error("does not start with {TEXT_PREFIX:?}")]
    Prefix,
    /// An odd number of hexadecimal digits.
    #[error("odd number of hexadecimal digits")]
    OddLength,
    /// A character that is not a hexadecimal digit.
    #[error("not a hexadecimal digit at byte {index}")]
    NotHex {
        /// Byte offset of the character in the text, after surrounding whitespace is trimmed.
        index: usize,
    },
    /// The digits end before the key does.
    #[error("too short")]
    Truncated,
    /// The hardware id is not UTF-8.
    #[error("hardware id is not UTF-8")]
    HardwareIdNotUtf8,
    /// Bytes after the signature.
    #[error("{len} bytes after the signature")]
    TrailingBytes {
        /// How many.
        len: usize,
    },
}

/// Why a license key does not add to the system total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Uncounted {
    /// Not signed by the vendor.
    BadSignature,
    /// No server with the key's hardware id is online in the system.
    HardwareOffline,
    /// Another copy of the same key id already counts.
    Duplicate,
}

/// The licensed channels of a system and which keys make them up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseTotals {
    /// Sum of the channels of the counted keys.
    pub total_channels: u64,
    /// Keys that count, by id.
    pub counted_keys: Vec<LicenseId>,
    /// Keys that do not count and why, by id; one entry per copy.
    pub uncounted: Vec<(LicenseId, Uncounted)>,
}

/// Sums the channels of the vendor-signed keys whose hardware is online; each key id counts once.
///
/// The result does not depend on the order of `keys`: copies of one id are taken in [`Ord`]
/// order and the first valid, online copy counts.
pub fn system_total<'a>(
    keys: impl IntoIterator<Item = &'a LicenseKey>,
    online_hardware: &BTreeSet<HardwareId>,
    vendor: &VerifyingKey,
) -> LicenseTotals {
    let mut keys: Vec<&LicenseKey> = keys.into_iter().collect();
    keys.sort_unstable();
    let mut totals = LicenseTotals::default();
    for key in keys {
        let reason = if key.verify(vendor).is_err() {
            Some(Uncounted::BadSignature)
        } else if !online_hardware.contains(&key.hardware_id) {
            Some(Uncounted::HardwareOffline)
        } else if totals.counted_keys.last() == Some(&key.id) {
            Some(Uncounted::Duplicate)
        } else {
            None
        };
        match reason {
            Some(reason) => totals.uncounted.push((key.id, reason)),
            None => {
                totals.counted_keys.push(key.id);
                totals.total_channels += u64::from(key.channels);
            }
        }
    }
    debug_assert!(totals.counted_keys.windows(2).all(|w| w[0] < w[1]));
    totals
}

/// A recorded start of a license shortfall (more cameras recording than licensed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shortfall {
    /// When the shortfall began, on the wall clock of the server that recorded it.
    pub since_ms: WallMs,
}

/// Where a system stands with its licenses, and what the caller should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShortfallState {
    /// Enough licenses; a recorded shortfall is over and should be cleared.
    Within,
    /// Newly short of licenses; record a [`Shortfall`] from `since_ms`.
    Started {
        /// When the shortfall began: now.
        since_ms: WallMs,
    },
    /// Short of licenses, but all cameras keep recording until `ends_ms`.
    InGrace {
        /// When the shortfall began.
        since_ms: WallMs,
        /// When the grace period ends and excess cameras stop.
        ends_ms: WallMs,
    },
    /// The grace period is over: `excess` cameras must stop (see [`cameras_to_stop`]).
    Expired {
        /// When the shortfall began.
        since_ms: WallMs,
        /// Cameras recording beyond the licensed total.
        excess: u64,
    },
}

/// The license state of a system with `used` recording cameras and `total` licensed channels,
/// at wall time `now`.
///
/// The grace period ends at exactly `since + grace_ms`: from then on the state is `Expired`.
pub fn shortfall_state(
    used: u64,
    total: u64,
    recorded: Option<Shortfall>,
    now: WallMs,
    grace_ms: u64,
) -> ShortfallState {
    if used <= total {
        return ShortfallState::Within;
    }
    let Some(Shortfall { since_ms }) = recorded else {
        return ShortfallState::Started { since_ms: now };
    };
    let ends_ms = since_ms.saturating_plus_ms(grace_ms);
    if now < ends_ms {
        ShortfallState::InGrace { since_ms, ends_ms }
    } else {
        ShortfallState::Expired { since_ms, excess: used - total }
    }
}

/// What the license rules need to know about a recording camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CameraLicenseView {
    /// The camera.
    pub id: CameraId,
    /// How much the camera matters; a lower priority stops first.
    pub priority: u8,
    /// When the camera was added to the system, in ms; a newer camera stops first.
    pub created_ms: u64,
}

/// The `excess` cameras to stop, sorted by id: lowest priority, then newest, then highest id first.
///
/// The choice depends only on the set of cameras, not their order, so every server agrees.
/// A camera id listed twice counts once.
pub fn cameras_to_stop(cameras: &[CameraLicenseView], excess: u64) -> Vec<CameraId> {
    let mut order: Vec<&CameraLicenseView> = cameras.iter().collect();
    order.sort_unstable_by(|a, b| {
        a.priority.cmp(&b.priority).then(b.created_ms.cmp(&a.created_ms)).then(b.id.cmp(&a.id))
    });
    let excess = usize::try_from(excess).unwrap_or(usize::MAX);
    let mut stop = BTreeSet::new();
    for camera in order {
        if stop.len() >= excess {
            break;
        }
        stop.insert(camera.id);
    }
    stop.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn vendor() -> LicenseIssuer {
        LicenseIssuer::from_seed([7; 32])
    }

    fn hw(name: &str) -> HardwareId {
        HardwareId(name.to_owned())
    }

    fn online(names: &[&str]) -> BTreeSet<HardwareId> {
        names.iter().map(|n| hw(n)).collect()
    }

    #[test]
    fn issued_key_verifies_against_the_vendor_key() {
        let issuer = vendor();
        let key = issuer.issue(LicenseId(1), 4, hw("hw-a"), 1_700_000_000_000);
        assert_eq!(key.verify(&issuer.verifying_key()), Ok(()));
        assert_eq!(issuer.verify(&key, &issuer.verifying_key()), Ok(()));
    }

    #[test]
    fn tampered_fields_fail_verification() {
        let issuer = vendor();
        let vendor_key = issuer.verifying_key();
        let key = issuer.issue(LicenseId(1), 4, hw("hw-a"), 1_000);
        let bad = Err(LicenseError::BadSignature { id: LicenseId(1) });
        assert_eq!(LicenseKey { channels: 400, ..key.clone() }.verify(&vendor_key), bad);
        assert_eq!(LicenseKey { hardware_id: hw("hw-b"), ..key.clone() }.verify(&vendor_key), bad);
        assert_eq!(LicenseKey { issued_ms: 1_001, ..key.clone() }.verify(&vendor_key), bad);
        let mut signature = key.signature;
        signature[10] ^= 1;
        assert_eq!(LicenseKey { signature, ..key.clone() }.verify(&vendor_key), bad);
        let moved = LicenseKey { id: LicenseId(2), ..key };
        assert_eq!(moved.verify(&vendor_key), Err(LicenseError::BadSignature { id: LicenseId(2) }));
    }

    #[test]
    fn fields_cannot_shift_between_hardware_id_and_neighbours() {
        // Length-prefixing keeps ("ab", t) and ("a", t') from encoding to the same bytes.
        let a = LicenseKey {
            id: LicenseId(1),
            channels: 1,
            hardware_id: hw("ab"),
            issued_ms: 0,
            signature: [0; 64],
        };
        let b = LicenseKey { hardware_id: hw("a"), ..a.clone() };
        assert_ne!(a.signed_message(), b.signed_message());
        assert!(a.signed_message().starts_with(b"hive-license-v1\0"));
    }

    #[test]
    fn text_form_round_trips() {
        let key = vendor().issue(LicenseId(0xabc), 10, hw("HW-Ünïcode 42"), 1_700_000_000_000);
        let text = key.to_text();
        assert!(text.starts_with(TEXT_PREFIX));
        assert_eq!(LicenseKey::from_text(&text), Ok(key.clone()));
        assert_eq!(
            LicenseKey::from_text(&format!(
                "  {}\n",
                text.to_lowercase().replace("hive1-", "HIVE1-")
            )),
            Ok(key.clone())
        );
        assert_eq!(text.parse::<LicenseKey>(), Ok(key.clone()));
        assert_eq!(key.to_string(), text);
    }

    #[test]
    fn malformed_text_is_refused_with_a_reason() {
        let text = vendor().issue(LicenseId(5), 4, hw("hw-a"), 1).to_text();
        let reason = |t: &str| match LicenseKey::from_text(t) {
            Err(LicenseError::MalformedText { reason }) => reason,
            other => panic!("expected malformed text, got {other:?}"),
        };
        assert_eq!(reason("HIVE2-00"), TextError::Prefix);
        assert_eq!(reason(""), TextError::Prefix);
        assert_eq!(reason(&text[..text.len() - 1]), TextError::OddLength);
        assert_eq!(reason(&text[..text.len() - 2]), TextError::Truncated);
        assert_eq!(reason(TEXT_PREFIX), TextError::Truncated);
        assert_eq!(reason(&format!("{text}00")), TextError::TrailingBytes { len: 1 });
        assert_eq!(
            reason(&format!("{}G{}", &text[..8], &text[9..])),
            TextError::NotHex { index: 8 }
        );
        // A hardware id length far beyond the input.
        let huge_len =
            format!("{TEXT_PREFIX}{}{}{}", "00".repeat(16), "00".repeat(4), "FF".repeat(8));
        assert_eq!(reason(&huge_len), TextError::Truncated);
        // A hardware id of one byte 0xFF, which is not UTF-8.
        let not_utf8 = format!(
            "{TEXT_PREFIX}{}{}{}FF{}{}",
            "00".repeat(16),
            "00".repeat(4),
            "0000000000000001",
            "00".repeat(8),
            "00".repeat(64)
        );
        assert_eq!(reason(&not_utf8), TextError::HardwareIdNotUtf8);
    }

    #[test]
    fn key_round_trips_through_cbor() {
        let key = vendor().issue(LicenseId(u128::MAX), 7, hw("hw-a"), 99);
        let mut bytes = Vec::new();
        ciborium::into_writer(&key, &mut bytes).unwrap();
        let back: LicenseKey = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn four_plus_ten_is_fourteen() {
        let issuer = vendor();
        let keys = [
            issuer.issue(LicenseId(1), 4, hw("hw-a"), 0),
            issuer.issue(LicenseId(2), 10, hw("hw-b"), 0),
        ];
        let totals = system_total(&keys, &online(&["hw-a", "hw-b"]), &issuer.verifying_key());
        assert_eq!(totals.total_channels, 14);
        assert_eq!(totals.counted_keys, vec![LicenseId(1), LicenseId(2)]);
        assert!(totals.uncounted.is_empty());
    }

    #[test]
    fn key_of_offline_hardware_does_not_count() {
        let issuer = vendor();
        let keys = [
            issuer.issue(LicenseId(1), 4, hw("hw-a"), 0),
            issuer.issue(LicenseId(2), 10, hw("hw-b"), 0),
        ];
        let totals = system_total(&keys, &online(&["hw-a"]), &issuer.verifying_key());
        assert_eq!(totals.total_channels, 4);
        assert_eq!(totals.uncounted, vec![(LicenseId(2), Uncounted::HardwareOffline)]);
    }

    #[test]
    fn key_signed_by_another_vendor_does_not_count() {
        let issuer = vendor();
        let forger = LicenseIssuer::from_seed([9; 32]);
        let keys = [
            issuer.issue(LicenseId(1), 4, hw("hw-a"), 0),
            forger.issue(LicenseId(2), 1000, hw("hw-a"), 0),
        ];
        let totals = system_total(&keys, &online(&["hw-a"]), &issuer.verifying_key());
        assert_eq!(totals.total_channels, 4);
        assert_eq!(totals.counted_keys, vec![LicenseId(1)]);
        assert_eq!(totals.uncounted, vec![(LicenseId(2), Uncounted::BadSignature)]);
    }

    #[test]
    fn duplicate_key_counts_once() {
        let issuer = vendor();
        let key = issuer.issue(LicenseId(1), 4, hw("hw-a"), 0);
        let keys = [key.clone(), key];
        let totals = system_total(&keys, &online(&["hw-a"]), &issuer.verifying_key());
        assert_eq!(totals.total_channels, 4);
        assert_eq!(totals.counted_keys, vec![LicenseId(1)]);
        assert_eq!(totals.uncounted, vec![(LicenseId(1), Uncounted::Duplicate)]);
    }

    #[test]
    fn forged_copy_of_a_key_id_does_not_displace_the_real_one() {
        let issuer = vendor();
        let real = issuer.issue(LicenseId(1), 4, hw("hw-a"), 0);
        let forged = LicenseKey { channels: 1, ..real.clone() };
        let vendor_key = issuer.verifying_key();
        for keys in [[real.clone(), forged.clone()], [forged, real]] {
            let totals = system_total(&keys, &online(&["hw-a"]), &vendor_key);
            assert_eq!(totals.total_channels, 4);
            assert_eq!(totals.uncounted, vec![(LicenseId(1), Uncounted::BadSignature)]);
        }
    }

    #[test]
    fn shortfall_goes_from_started_through_grace_to_expired_at_exactly_since_plus_grace() {
        let grace = GRACE_MS_DEFAULT;
        assert_eq!(grace, 2_592_000_000);
        let t0 = WallMs(1_000);
        let end = WallMs(t0.0 + grace);
        assert_eq!(shortfall_state(14, 14, None, t0, grace), ShortfallState::Within);
        assert_eq!(
            shortfall_state(16, 14, None, t0, grace),
            ShortfallState::Started { since_ms: t0 }
        );
        let recorded = Some(Shortfall { since_ms: t0 });
        let in_grace = ShortfallState::InGrace { since_ms: t0, ends_ms: end };
        assert_eq!(shortfall_state(16, 14, recorded, t0, grace), in_grace);
        assert_eq!(shortfall_state(16, 14, recorded, WallMs(end.0 - 1), grace), in_grace);
        assert_eq!(
            shortfall_state(16, 14, recorded, end, grace),
            ShortfallState::Expired { since_ms: t0, excess: 2 }
        );
        // Licenses added or cameras removed: the shortfall is over.
        assert_eq!(shortfall_state(14, 14, recorded, end, grace), ShortfallState::Within);
    }

    #[test]
    fn grace_end_saturates_instead_of_overflowing() {
        let recorded = Some(Shortfall { since_ms: WallMs(u64::MAX - 1) });
        assert_eq!(
            shortfall_state(2, 1, recorded, WallMs(0), GRACE_MS_DEFAULT),
            ShortfallState::InGrace { since_ms: WallMs(u64::MAX - 1), ends_ms: WallMs(u64::MAX) }
        );
    }

    #[test]
    fn lowest_priority_then_newest_then_highest_id_stops_first() {
        let cam =
            |id, priority, created_ms| CameraLicenseView { id: CameraId(id), priority, created_ms };
        let cameras = [cam(1, 2, 10), cam(2, 1, 10), cam(3, 1, 20), cam(4, 1, 20), cam(5, 0, 0)];
        assert_eq!(cameras_to_stop(&cameras, 0), vec![]);
        assert_eq!(cameras_to_stop(&cameras, 1), vec![CameraId(5)]);
        assert_eq!(cameras_to_stop(&cameras, 2), vec![CameraId(4), CameraId(5)]);
        assert_eq!(cameras_to_stop(&cameras, 3), vec![CameraId(3), CameraId(4), CameraId(5)]);
        assert_eq!(cameras_to_stop(&cameras, 4).len(), 4);
        assert_eq!(cameras_to_stop(&cameras, u64::MAX).len(), 5);
    }

    fn camera_sets() -> impl Strategy<Value = Vec<CameraLicenseView>> {
        // Small ranges make ties in priority and creation time common.
        prop::collection::btree_map(0u128..64, (0u8..4, 0u64..8), 0..24).prop_map(
            |cameras: BTreeMap<u128, (u8, u64)>| {
                cameras
                    .into_iter()
                    .map(|(id, (priority, created_ms))| CameraLicenseView {
                        id: CameraId(id),
                        priority,
                        created_ms,
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #[test]
        fn choice_of_cameras_to_stop_ignores_input_order(
            (cameras, shuffled) in camera_sets()
                .prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
            excess in 0u64..30,
        ) {
            prop_assert_eq!(cameras_to_stop(&cameras, excess), cameras_to_stop(&shuffled, excess));
        }

        #[test]
        fn exactly_min_of_excess_and_cameras_stop_sorted_by_id(
            cameras in camera_sets(),
            excess in 0u64..30,
        ) {
            let stop = cameras_to_stop(&cameras, excess);
            prop_assert_eq!(stop.len() as u64, excess.min(cameras.len() as u64));
            prop_assert!(stop.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(stop.iter().all(|id| cameras.iter().any(|c| c.id == *id)));
        }

        #[test]
        fn never_stops_a_camera_while_a_lower_priority_or_newer_peer_keeps_running(
            cameras in camera_sets(),
            excess in 0u64..30,
        ) {
            let stop: BTreeSet<CameraId> = cameras_to_stop(&cameras, excess).into_iter().collect();
            let (stopped, running): (Vec<&CameraLicenseView>, Vec<&CameraLicenseView>) =
                cameras.iter().partition(|c| stop.contains(&c.id));
            for s in &stopped {
                for r in &running {
                    prop_assert!(s.priority <= r.priority, "stopped {s:?} over {r:?}");
                    if s.priority == r.priority {
                        prop_assert!(s.created_ms >= r.created_ms, "stopped {s:?} over {r:?}");
                    }
                }
            }
        }
    }
}
