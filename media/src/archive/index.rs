//! The in-memory index of one camera stream's archive: its segments in order, each with its
//! keyframes (time → offset) and the time spans it recorded. A seek is two binary searches,
//! never a read of the files; retention drops the oldest segment and its entries at once.
//!
//! Frame times in a stream never go back: the index refuses a record older than the newest
//! one, so keyframes stay sorted across segments. Memory: 16 bytes per keyframe plus a few
//! words per segment and per recorded span.

use super::segment::RecordPos;
use std::collections::VecDeque;
use thiserror::Error;

/// A segment's number in its stream: segments are numbered from 1 in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

impl SegmentId {
    /// The number after this one.
    pub fn next(self) -> SegmentId {
        SegmentId(self.0 + 1)
    }
}

/// Where a record starts: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment.
    pub segment: SegmentId,
    /// Byte offset of the record in the segment file.
    pub offset: usize,
}

/// A keyframe: where a decoder can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Its time, µs since the Unix epoch.
    pub time_us: i64,
    /// Where its record starts.
    pub position: Position,
}

/// A recorded time range, both ends frame times, µs since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Time of its first frame.
    pub from_us: i64,
    /// Time of its last frame.
    pub to_us: i64,
}

/// What the index knows of one segment, for retention and readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The segment.
    pub id: SegmentId,
    /// Where its intact records end: readers stop here.
    pub end: usize,
    /// Time of its first frame, if it has one.
    pub first_us: Option<i64>,
    /// Time of its last frame, if it has one.
    pub last_us: Option<i64>,
}

/// A change the index refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IndexError {
    /// Segments are added in increasing order.
    #[error("segment {segment:?} added after {newest:?}")]
    SegmentOutOfOrder {
        /// The segment added.
        segment: SegmentId,
        /// The newest segment there is.
        newest: SegmentId,
    },
    /// Records are appended to the newest segment only.
    #[error("record for segment {segment:?}, which is not the newest")]
    NotNewest {
        /// The segment named.
        segment: SegmentId,
    },
    /// A record older than the newest frame of the stream.
    #[error("frame at {time_us} µs is older than the last one at {last_us} µs")]
    TimeWentBack {
        /// The record's time.
        time_us: i64,
        /// The newest frame's time.
        last_us: i64,
    },
    /// A record that starts before the end of the previous one.
    #[error("record at offset {offset} overlaps the previous one, which ends at {end}")]
    Overlap {
        /// Where the record starts.
        offset: usize,
        /// Where the previous one ends.
        end: usize,
    },
}

#[derive(Debug)]
struct Segment {
    id: SegmentId,
    end: usize,
    /// The stream's newest frame time when the segment was added, or its own first frame's
    /// time once it has one: a key that never decreases along the segments.
    floor_us: i64,
    keyframes: Vec<(i64, usize)>,
    spans: Vec<Range>,
    /// Whether its first span goes on from the last span before it (the segments between are
    /// all here and the time between is under the gap).
    joins_previous: bool,
}

impl Segment {
    fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            id: self.id,
            end: self.end,
            first_us: self.spans.first().map(|s| s.from_us),
            last_us: self.spans.last().map(|s| s.to_us),
        }
    }
}

/// The index of one camera stream.
#[derive(Debug)]
pub struct StreamIndex {
    gap_us: i64,
    segments: VecDeque<Segment>,
    last_us: Option<i64>,
}

impl StreamIndex {
    /// An empty index; frames further apart than `gap_us` split a recorded range.
    pub fn new(gap_us: i64) -> StreamIndex {
        assert!(gap_us >= 0, "a gap is a duration");
        StreamIndex { gap_us, segments: VecDeque::new(), last_us: None }
    }

    /// Adds an empty segment after the others; its records start at `data_start`.
    pub fn add_segment(&mut self, id: SegmentId, data_start: usize) -> Result<(), IndexError> {
        if let Some(newest) = self.segments.back() {
            if id <= newest.id {
                return Err(IndexError::SegmentOutOfOrder { segment: id, newest: newest.id });
            }
        }
        let floor_us = self.last_us.unwrap_or(i64::MIN);
        self.segments.push_back(Segment {
            id,
            end: data_start,
            floor_us,
            keyframes: Vec::new(),
            spans: Vec::new(),
            joins_previous: false,
        });
        Ok(())
    }

    /// Whether `record` may be appended to `segment` now: the checks of
    /// [`StreamIndex::append`], without changing anything.
    pub fn check_append(&self, segment: SegmentId, record: &RecordPos) -> Result<(), IndexError> {
        let newest = self.segments.back().filter(|s| s.id == segment);
        let newest = newest.ok_or(IndexError::NotNewest { segment })?;
        if record.offset < newest.end {
            return Err(IndexError::Overlap { offset: record.offset, end: newest.end });
        }
        match self.last_us {
            Some(last_us) if record.time_us < last_us => {
                Err(IndexError::TimeWentBack { time_us: record.time_us, last_us })
            }
            _ => Ok(()),
        }
    }

    /// Notes a record written to (or found in) the newest segment.
    pub fn append(&mut self, segment: SegmentId, record: &RecordPos) -> Result<(), IndexError> {
        self.check_append(segment, record)?;
        let joins = self.joins_previous_span(record.time_us);
        let gap_us = self.gap_us;
        let newest = self.segments.back_mut().expect("checked: the newest segment exists");
        if record.keyframe {
            newest.keyframes.push((record.time_us, record.offset));
        }
        match newest.spans.last_mut() {
            Some(span) if record.time_us.saturating_sub(span.to_us) <= gap_us => {
                span.to_us = record.time_us;
            }
            Some(_) => newest.spans.push(Range { from_us: record.time_us, to_us: record.time_us }),
            None => {
                newest.spans.push(Range { from_us: record.time_us, to_us: record.time_us });
                newest.joins_previous = joins;
                newest.floor_us = record.time_us;
            }
        }
        newest.end = record.end();
        self.last_us = Some(record.time_us);
        Ok(())
    }

    /// Whether a first frame at `time_us` of the newest segment goes on from the last span
    /// of an earlier one: no segment missing in between and a time step under the gap.
    fn joins_previous_span(&self, time_us: i64) -> bool {
        let mut expected = match self.segments.back() {
            Some(newest) if newest.spans.is_empty() => newest.id,
            _ => return false,
        };
        for segment in self.segments.iter().rev() {
            if segment.id != expected {
                return false;
            }
            if let Some(span) = segment.spans.last() {
                return time_us.saturating_sub(span.to_us) <= self.gap_us;
            }
            expected = SegmentId(expected.0.wrapping_sub(1));
        }
        false
    }

    /// The keyframe at or before `time_us`; the first keyframe when `time_us` is earlier than
    /// all of them; `None` when there is none.
    pub fn seek(&self, time_us: i64) -> Option<Keyframe> {
        // Segments that may hold frames at or before `time_us`: floors never decrease.
        let candidates = self.segments.partition_point(|s| s.floor_us <= time_us);
        for segment in self.segments.range(..candidates).rev() {
            let i = segment.keyframes.partition_point(|&(t, _)| t <= time_us);
            if i > 0 {
                return Some(Self::keyframe(segment, i - 1));
            }
            // Only keyframes after `time_us` here (a group of pictures begun in an earlier
            // segment), or none: look further back.
        }
        self.segments.iter().find(|s| !s.keyframes.is_empty()).map(|s| Self::keyframe(s, 0))
    }

    fn keyframe(segment: &Segment, i: usize) -> Keyframe {
        let (time_us, offset) = segment.keyframes[i];
        Keyframe { time_us, position: Position { segment: segment.id, offset } }
    }

    /// Recorded ranges overlapping `[from_us, to_us]`, oldest first, each whole (not cut to
    /// the window). Ranges split where consecutive frames are more than the gap apart and
    /// where a segment is missing.
    pub fn ranges(&self, from_us: i64, to_us: i64) -> Vec<Range> {
        let mut out = Vec::new();
        let mut keep = |range: Range| {
            if range.to_us >= from_us && range.from_us <= to_us {
                out.push(range);
            }
        };
        let mut current: Option<Range> = None;
        for segment in &self.segments {
            for (i, span) in segment.spans.iter().enumerate() {
                match current.as_mut() {
                    Some(range) if i == 0 && segment.joins_previous => range.to_us = span.to_us,
                    _ => {
                        if let Some(range) = current.replace(*span) {
                            keep(range);
                        }
                    }
                }
            }
        }
        if let Some(range) = current {
            keep(range);
        }
        out
    }

    /// Drops the oldest segment and its entries; returns it.
    pub fn drop_oldest(&mut self) -> Option<SegmentSummary> {
        let dropped = self.segments.pop_front()?;
        if let Some(first) = self.segments.front_mut() {
            first.joins_previous = false;
        }
        Some(dropped.summary())
    }

    /// The oldest segment.
    pub fn oldest(&self) -> Option<SegmentSummary> {
        self.segments.front().map(Segment::summary)
    }

    /// The newest segment.
    pub fn newest(&self) -> Option<SegmentSummary> {
        self.segments.back().map(Segment::summary)
    }

    /// The segment `id`, if it is indexed.
    pub fn segment(&self, id: SegmentId) -> Option<SegmentSummary> {
        let i = self.segments.binary_search_by_key(&id, |s| s.id).ok()?;
        Some(self.segments[i].summary())
    }

    /// The first segment after `id`.
    pub fn segment_after(&self, id: SegmentId) -> Option<SegmentSummary> {
        let i = self.segments.partition_point(|s| s.id <= id);
        self.segments.get(i).map(Segment::summary)
    }

    /// Every segment, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = SegmentSummary> + '_ {
        self.segments.iter().map(Segment::summary)
    }

    /// Time of the newest frame ever appended (kept when its segment is dropped, so that
    /// times still never go back).
    pub fn last_us(&self) -> Option<i64> {
        self.last_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GAP_US: i64 = 5_000_000;
    const DATA_START: usize = 64;

    /// A frame of a test stream: its segment, time and whether it is a keyframe.
    #[derive(Debug, Clone, Copy)]
    struct Written {
        segment: SegmentId,
        offset: usize,
        time_us: i64,
        keyframe: bool,
    }

    /// Builds an index from frames `(new segment before it?, time step, keyframe)`.
    fn build(steps: &[(bool, i64, bool)]) -> (StreamIndex, Vec<Written>) {
        let mut index = StreamIndex::new(GAP_US);
        let mut written = Vec::new();
        let mut segment = SegmentId(1);
        let (mut offset, mut time_us) = (DATA_START, 1_000_000_000);
        index.add_segment(segment, DATA_START).unwrap();
        for &(new_segment, step_us, keyframe) in steps {
            if new_segment {
                segment = segment.next();
                offset = DATA_START;
                index.add_segment(segment, DATA_START).unwrap();
            }
            time_us += step_us;
            let record = RecordPos { offset, len: 96, time_us, keyframe };
            index.append(segment, &record).unwrap();
            written.push(Written { segment, offset, time_us, keyframe });
            offset += 96;
        }
        (index, written)
    }

    /// What seek must answer, by looking at every frame.
    fn seek_by_hand(written: &[Written], time_us: i64) -> Option<Keyframe> {
        let keyframes = written.iter().filter(|w| w.keyframe);
        let at_or_before = keyframes.clone().rfind(|w| w.time_us <= time_us);
        at_or_before.or_else(|| keyframes.clone().next()).map(|w| Keyframe {
            time_us: w.time_us,
            position: Position { segment: w.segment, offset: w.offset },
        })
    }

    /// What ranges must answer when no segment is missing, by looking at every frame.
    fn ranges_by_hand(written: &[Written]) -> Vec<Range> {
        let mut out: Vec<Range> = Vec::new();
        for w in written {
            match out.last_mut() {
                Some(r) if w.time_us - r.to_us <= GAP_US => r.to_us = w.time_us,
                _ => out.push(Range { from_us: w.time_us, to_us: w.time_us }),
            }
        }
        out
    }

    fn steps() -> impl Strategy<Value = Vec<(bool, i64, bool)>> {
        let step = prop_oneof![8 => 0i64..100_000, 1 => 4_000_000i64..7_000_000];
        prop::collection::vec((prop::bool::weighted(0.1), step, prop::bool::weighted(0.1)), 1..200)
    }

    proptest! {
        #[test]
        fn seek_finds_the_keyframe_at_or_before_any_time(steps in steps(), probes in prop::collection::vec(-1_000_000i64..400_000_000, 1..20)) {
            let (index, written) = build(&steps);
            for probe in probes {
                let time_us = 1_000_000_000 + probe;
                prop_assert_eq!(index.seek(time_us), seek_by_hand(&written, time_us));
            }
            for w in &written {
                prop_assert_eq!(index.seek(w.time_us), seek_by_hand(&written, w.time_us));
            }
        }

        #[test]
        fn ranges_split_at_gaps_and_not_at_segments(steps in steps()) {
            let (index, written) = build(&steps);
            prop_assert_eq!(index.ranges(i64::MIN, i64::MAX), ranges_by_hand(&written));
        }

        #[test]
        fn dropping_the_oldest_segments_forgets_their_frames(steps in steps(), drop in 1usize..5) {
            let (mut index, written) = build(&steps);
            let mut dropped = Vec::new();
            for _ in 0..drop {
                if let Some(s) = index.drop_oldest() {
                    dropped.push(s.id);
                }
            }
            let left: Vec<Written> =
                written.iter().copied().filter(|w| !dropped.contains(&w.segment)).collect();
            prop_assert_eq!(index.ranges(i64::MIN, i64::MAX), ranges_by_hand(&left));
            for w in &written {
                prop_assert_eq!(index.seek(w.time_us), seek_by_hand(&left, w.time_us));
            }
        }
    }

    #[test]
    fn a_missing_segment_splits_a_range_and_a_window_keeps_whole_ranges() {
        let mut index = StreamIndex::new(GAP_US);
        let frame = |offset, time_us| RecordPos { offset, len: 96, time_us, keyframe: true };
        index.add_segment(SegmentId(1), DATA_START).unwrap();
        index.append(SegmentId(1), &frame(64, 100)).unwrap();
        index.append(SegmentId(1), &frame(160, 200)).unwrap();
        index.add_segment(SegmentId(2), DATA_START).unwrap();
        index.append(SegmentId(2), &frame(64, 300)).unwrap();
        // Segment 3 is lost (say its file was unreadable).
        index.add_segment(SegmentId(4), DATA_START).unwrap();
        index.append(SegmentId(4), &frame(64, 400)).unwrap();
        let all = index.ranges(i64::MIN, i64::MAX);
        assert_eq!(
            all,
            vec![Range { from_us: 100, to_us: 300 }, Range { from_us: 400, to_us: 400 }]
        );
        assert_eq!(index.ranges(250, 260), vec![Range { from_us: 100, to_us: 300 }]);
        assert_eq!(index.ranges(301, 399), vec![]);
    }

    #[test]
    fn appends_that_would_break_the_order_are_refused() {
        let mut index = StreamIndex::new(GAP_US);
        let frame = |offset, time_us| RecordPos { offset, len: 96, time_us, keyframe: false };
        index.add_segment(SegmentId(2), DATA_START).unwrap();
        assert_eq!(
            index.add_segment(SegmentId(2), DATA_START),
            Err(IndexError::SegmentOutOfOrder { segment: SegmentId(2), newest: SegmentId(2) })
        );
        index.append(SegmentId(2), &frame(64, 500)).unwrap();
        assert_eq!(
            index.append(SegmentId(2), &frame(160, 499)),
            Err(IndexError::TimeWentBack { time_us: 499, last_us: 500 })
        );
        assert_eq!(
            index.append(SegmentId(2), &frame(100, 600)),
            Err(IndexError::Overlap { offset: 100, end: 160 })
        );
        assert_eq!(
            index.append(SegmentId(1), &frame(64, 600)),
            Err(IndexError::NotNewest { segment: SegmentId(1) })
        );
        // Dropping every segment does not let time go back.
        index.drop_oldest();
        index.add_segment(SegmentId(3), DATA_START).unwrap();
        assert!(index.append(SegmentId(3), &frame(64, 400)).is_err());
        assert_eq!(index.seek(0), None);
    }
}
