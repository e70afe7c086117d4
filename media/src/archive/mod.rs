//! The archive's on-disk format and in-memory index, without I/O: what a record and a segment
//! file look like ([`record`], [`segment`]), how [`segment::scan`] recovers every intact frame
//! from whatever a crash or a failing disk left, and how a [`index::StreamIndex`] turns a time
//! into a position. The shell maps the files and calls these; `docs/archive.md` has the crash
//! rules.

pub mod index;
pub mod record;
pub mod segment;

pub use index::{IndexError, Keyframe, Position, Range, SegmentId, SegmentSummary, StreamIndex};
pub use record::{EncodeError, RecordError, RecordHeader};
pub use segment::{
    scan, Damage, DamageKind, HeaderError, RecordPos, Scan, SegmentHeader, TornTail,
    SEGMENT_HEADER_LEN,
};
