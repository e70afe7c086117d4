//! The replicated store: last-writer-wins entries per key, ordered by `(hlc, origin)`, and the
//! per-origin sequence vector that says which transactions a replica already reflects.

use crate::hlc::Hlc;
use crate::ids::ServerId;
use crate::resources::{Key, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The writer of a transaction: a server in one incarnation of its log.
///
/// A server normally keeps one epoch for life; it starts a new one only when its log was found
/// damaged, so that sequence numbers it may already have handed out are never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId {
    /// Server that wrote.
    pub server: ServerId,
    /// Incarnation of its log.
    pub epoch: u64,
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}", self.server, self.epoch)
    }
}

/// Sequence number of a transaction within its origin, from 1.
pub type Seq = u64;

/// One change to the replicated store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Transaction {
    /// Who wrote it.
    pub origin: ReplicaId,
    /// Its place in the origin's sequence.
    pub seq: Seq,
    /// When, in hybrid logical time.
    pub hlc: Hlc,
    /// What it changes.
    pub key: Key,
    /// The new value, or `None` for a deletion (tombstone).
    pub value: Option<Value>,
}

/// The surviving write for one key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Entry {
    /// Origin of the winning write.
    pub origin: ReplicaId,
    /// Its sequence number.
    pub seq: Seq,
    /// Its timestamp.
    pub hlc: Hlc,
    /// The value, or `None` if deleted.
    pub value: Option<Value>,
}

impl Entry {
    /// Which of two writes of `key` wins: last-writer-wins, except that a camera history span
    /// only moves forward (see [`span_progress`]); `seq` only separates writes of one origin
    /// with equal stamps, which a correct origin never produces, so the order is total even on
    /// bad input, and applying writes in any order converges.
    fn rank(&self, key: &Key) -> (u64, Hlc, ReplicaId, Seq) {
        (span_progress(key, self.value.as_ref()), self.hlc, self.origin, self.seq)
    }
}

/// How far a camera history span has come: open, then closed (a later end beyond an earlier
/// one), then deleted; 0 for every other key, which plain last-writer-wins orders. Every end
/// written for a span is a time its server was known to still record — the taker's "last
/// heard of it", the server's own stop, or the newest time it knew when it restarted after a
/// crash — so the latest end is the best estimate, whoever wrote it and when: a restarted
/// server's late, cruder close must not cut the span short.
fn span_progress(key: &Key, value: Option<&Value>) -> u64 {
    match (key, value) {
        (Key::CameraHistory { .. }, Some(Value::CameraHistory(span))) => {
            span.end_ms.map_or(0, |end| end.saturating_add(1).min(u64::MAX - 1))
        }
        (Key::CameraHistory { .. }, _) => u64::MAX,
        _ => 0,
    }
}

/// For each origin, the highest sequence number up to which this replica reflects every write.
pub type Vector = BTreeMap<ReplicaId, Seq>;

/// What applying a transaction did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Applied {
    /// New to this replica and now the value of its key.
    Won,
    /// New to this replica but older than the key's current value.
    Lost,
    /// Already reflected; nothing changed.
    Duplicate,
}

impl Applied {
    /// Whether the transaction was new here (and must be persisted and passed on).
    pub fn is_new(self) -> bool {
        self != Applied::Duplicate
    }
}

/// A replica of the system's data.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Store {
    entries: BTreeMap<Key, Entry>,
    vector: Vector,
    /// Transactions applied beyond the contiguous prefix of their origin.
    ahead: BTreeSet<(ReplicaId, Seq)>,
    /// Which key each surviving write sits under, to answer range pulls by origin.
    #[serde(skip)]
    by_origin: BTreeMap<(ReplicaId, Seq), Key>,
    /// The newest stamp among the entries, kept so the node's clock check is O(1). An entry is
    /// only ever replaced by a higher-ranked one, so this is also the newest write that won.
    #[serde(skip)]
    hlc_max: Hlc,
}

/// A broken invariant of the store's sequence vector.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum StoreViolation {
    /// A transaction is marked as held beyond the prefix although it continues the prefix
    /// (or lies inside it): the vector should have absorbed it.
    #[error("{origin:?}: write #{seq} held apart although the vector covers up to #{covered}")]
    GapNotClosed {
        /// The origin.
        origin: ReplicaId,
        /// The ahead-mark.
        seq: Seq,
        /// The origin's contiguous prefix.
        covered: Seq,
    },
    /// The vector lists an origin at 0, which means nothing and should not be stored.
    #[error("{origin:?}: covered up to #0")]
    EmptyPrefix {
        /// The origin.
        origin: ReplicaId,
    },
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// Rebuilds the index after deserialising a snapshot.
    pub fn reindex(&mut self) {
        self.by_origin = self.entries.iter().map(|(k, e)| ((e.origin, e.seq), k.clone())).collect();
        self.hlc_max = self.entries.values().map(|e| e.hlc).max().unwrap_or_default();
    }

    /// Whether this replica already reflects transaction `seq` of `origin`.
    pub fn knows(&self, origin: ReplicaId, seq: Seq) -> bool {
        seq <= self.covered(origin) || self.ahead.contains(&(origin, seq))
    }

    /// The contiguous prefix of `origin` this replica reflects.
    pub fn covered(&self, origin: ReplicaId) -> Seq {
        self.vector.get(&origin).copied().unwrap_or(0)
    }

    /// The highest sequence number of `origin` seen at all (contiguous or not).
    pub fn highest(&self, origin: ReplicaId) -> Seq {
        let ahead = self.ahead.range((origin, 0)..=(origin, Seq::MAX)).next_back();
        ahead.map_or(0, |&(_, s)| s).max(self.covered(origin))
    }

    /// The sequence vector.
    pub fn vector(&self) -> &Vector {
        &self.vector
    }

    /// Applies a transaction by last-writer-wins; idempotent and order-independent.
    pub fn apply(&mut self, txn: &Transaction) -> Applied {
        if self.knows(txn.origin, txn.seq) {
            return Applied::Duplicate;
        }
        self.mark_known(txn.origin, txn.seq);
        let incoming =
            Entry { origin: txn.origin, seq: txn.seq, hlc: txn.hlc, value: txn.value.clone() };
        match self.entries.get(&txn.key) {
            Some(current) if current.rank(&txn.key) >= incoming.rank(&txn.key) => Applied::Lost,
            current => {
                if let Some(old) = current {
                    self.by_origin.remove(&(old.origin, old.seq));
                }
                self.by_origin.insert((txn.origin, txn.seq), txn.key.clone());
                self.hlc_max = self.hlc_max.max(txn.hlc);
                self.entries.insert(txn.key.clone(), incoming);
                Applied::Won
            }
        }
    }

    fn mark_known(&mut self, origin: ReplicaId, seq: Seq) {
        let covered = self.covered(origin);
        if seq == covered + 1 {
            self.advance(origin, seq);
        } else {
            self.ahead.insert((origin, seq));
        }
    }

    /// Records that this replica now reflects every write of `origin` up to `upto`.
    pub fn cover(&mut self, origin: ReplicaId, upto: Seq) {
        if upto > self.covered(origin) {
            self.advance(origin, upto);
        }
    }

    fn advance(&mut self, origin: ReplicaId, mut upto: Seq) {
        // Drop ahead-marks now inside the prefix, then absorb any that continue it.
        let inside: Vec<_> = self.ahead.range((origin, 0)..=(origin, upto)).copied().collect();
        for mark in inside {
            self.ahead.remove(&mark);
        }
        while self.ahead.remove(&(origin, upto + 1)) {
            upto += 1;
        }
        self.vector.insert(origin, upto);
    }

    /// Surviving writes of `origin` after `after`, at most `limit`, and the sequence number up to
    /// which a receiver reflects `origin` once it has applied them.
    pub fn writes_after(
        &self,
        origin: ReplicaId,
        after: Seq,
        limit: usize,
    ) -> (Vec<Transaction>, Seq) {
        let mut txns = Vec::new();
        let mut range = self.by_origin.range((origin, after + 1)..=(origin, Seq::MAX));
        for ((_, seq), key) in range.by_ref().take(limit) {
            let e = &self.entries[key];
            debug_assert_eq!(e.seq, *seq);
            txns.push(Transaction {
                origin,
                seq: *seq,
                hlc: e.hlc,
                key: key.clone(),
                value: e.value.clone(),
            });
        }
        let covered = self.covered(origin);
        let upto = match (range.next(), txns.last()) {
            (Some(_), Some(last)) => last.seq.min(covered),
            _ => covered,
        };
        (txns, upto.max(after))
    }

    /// The live (not deleted) value under `key`.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.entries.get(key).and_then(|e| e.value.as_ref())
    }

    /// The winning entry under `key`, tombstones included.
    pub fn entry(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Live entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter().filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
    }

    /// Live entries whose keys fall in `range`, in key order.
    pub fn range<R: std::ops::RangeBounds<Key>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.range(range).filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
    }

    /// Every entry, tombstones included: what two converged replicas must agree on.
    pub fn entries(&self) -> &BTreeMap<Key, Entry> {
        &self.entries
    }

    /// The newest timestamp in the store.
    pub fn hlc_max(&self) -> Hlc {
        self.hlc_max
    }

    /// Checks that the vector is a contiguous prefix per origin: no transaction is held apart
    /// that continues or lies inside its origin's prefix. O(origins), not O(store): it looks
    /// at the first ahead-mark of each origin only, as the marks are sorted.
    pub fn check_invariants(&self) -> Result<(), StoreViolation> {
        if let Some((&origin, _)) = self.vector.iter().find(|(_, &covered)| covered == 0) {
            return Err(StoreViolation::EmptyPrefix { origin });
        }
        let mut from = self.ahead.iter().next().copied();
        while let Some((origin, seq)) = from {
            let covered = self.covered(origin);
            if seq <= covered + 1 {
                return Err(StoreViolation::GapNotClosed { origin, seq, covered });
            }
            let next_origin = (origin, Seq::MAX);
            from = self
                .ahead
                .range((std::ops::Bound::Excluded(next_origin), std::ops::Bound::Unbounded))
                .next()
                .copied();
        }
        Ok(())
    }

    /// Number of entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ServerId, SystemId};
    use proptest::prelude::*;

    fn origin(n: u128) -> ReplicaId {
        ReplicaId { server: ServerId(n), epoch: 0 }
    }

    fn setting(name: &str) -> Key {
        Key::Setting { system: SystemId(1), name: name.into() }
    }

    fn txn(o: u128, seq: Seq, wall_ms: u64, key: &str, value: Option<&str>) -> Transaction {
        Transaction {
            origin: origin(o),
            seq,
            hlc: Hlc { wall_ms, logical: 0 },
            key: setting(key),
            value: value.map(|v| Value::Setting(v.into())),
        }
    }

    #[test]
    fn later_write_wins_and_ties_break_by_origin() {
        let mut s = Store::new();
        assert_eq!(s.apply(&txn(1, 1, 10, "a", Some("x"))), Applied::Won);
        assert_eq!(s.apply(&txn(2, 1, 5, "a", Some("y"))), Applied::Lost);
        assert_eq!(s.apply(&txn(3, 1, 10, "a", Some("z"))), Applied::Won);
        assert_eq!(s.get(&setting("a")), Some(&Value::Setting("z".into())));
        assert_eq!(s.apply(&txn(3, 1, 10, "a", Some("z"))), Applied::Duplicate);
    }

    #[test]
    fn a_history_span_keeps_its_latest_end_whichever_write_came_last() {
        use crate::ids::CameraId;
        use crate::resources::HistoryRecord;
        let key = Key::CameraHistory { camera: CameraId(7), server: ServerId(1), start_ms: 100 };
        let span = |o: u128, wall_ms: u64, end_ms: Option<u64>| Transaction {
            origin: origin(o),
            seq: 1,
            hlc: Hlc { wall_ms, logical: 0 },
            key: key.clone(),
            value: Some(Value::CameraHistory(HistoryRecord { end_ms })),
        };
        // The recorder opened it; a taker closed it at 900, when it last heard of the
        // recorder; the recorder, restarted after a crash, closed it later at 150, the newest
        // time it knew. In any order, the span ends at 900.
        let writes = [span(1, 100, None), span(2, 1_000, Some(900)), span(3, 2_000, Some(150))];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut s = Store::new();
            for i in order {
                s.apply(&writes[i]);
            }
            let end = HistoryRecord { end_ms: Some(900) };
            assert_eq!(s.get(&key), Some(&Value::CameraHistory(end)), "{order:?}");
        }
    }

    #[test]
    fn out_of_order_writes_advance_the_vector_once_contiguous() {
        let mut s = Store::new();
        s.apply(&txn(1, 2, 2, "b", Some("2")));
        assert_eq!(s.covered(origin(1)), 0);
        assert_eq!(s.highest(origin(1)), 2);
        s.apply(&txn(1, 1, 1, "a", Some("1")));
        assert_eq!(s.covered(origin(1)), 2);
    }

    #[test]
    fn a_tombstone_hides_the_value_but_stays_as_an_entry() {
        let mut s = Store::new();
        s.apply(&txn(1, 1, 1, "a", Some("1")));
        s.apply(&txn(1, 2, 2, "a", None));
        assert_eq!(s.get(&setting("a")), None);
        assert_eq!(s.entries().len(), 1);
    }

    #[test]
    fn writes_after_pages_through_an_origin() {
        let mut s = Store::new();
        for i in 1..=5 {
            s.apply(&txn(1, i, i, &format!("k{i}"), Some("v")));
        }
        let (page, upto) = s.writes_after(origin(1), 0, 2);
        assert_eq!(page.len(), 2);
        assert_eq!(upto, 2);
        let (page, upto) = s.writes_after(origin(1), upto, 10);
        assert_eq!(page.len(), 3);
        assert_eq!(upto, 5);
    }

    fn arb_txns() -> impl Strategy<Value = Vec<Transaction>> {
        // Distinct (origin, seq) pairs with random content: what real origins produce.
        proptest::collection::vec(
            (0u128..4, 0u64..50, 0usize..5, proptest::option::of(0u8..3)),
            1..60,
        )
        .prop_map(|raw| {
            let mut next: BTreeMap<u128, Seq> = BTreeMap::new();
            raw.into_iter()
                .map(|(o, wall, k, v)| {
                    let seq = next.entry(o).or_insert(0);
                    *seq += 1;
                    let v = v.map(|v| v.to_string());
                    txn(o, *seq, wall, &format!("k{k}"), v.as_deref())
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_order_with_duplicates_gives_the_same_state(
            txns in arb_txns(),
            perm in proptest::collection::vec(any::<proptest::sample::Index>(), 0..200),
        ) {
            let mut reference = Store::new();
            for t in &txns { reference.apply(t); }
            // A shuffled schedule with duplicates, covering every transaction at least once.
            let mut schedule: Vec<&Transaction> = perm.iter().map(|i| i.get(&txns)).collect();
            schedule.extend(txns.iter().rev());
            let mut other = Store::new();
            for t in schedule { other.apply(t); }
            other.reindex();
            reference.reindex();
            prop_assert_eq!(other, reference);
        }

        #[test]
        fn pulling_every_origin_reproduces_the_store(txns in arb_txns(), limit in 1usize..5) {
            let mut source = Store::new();
            for t in &txns { source.apply(t); }
            let mut dest = Store::new();
            for &o in source.vector().clone().keys() {
                let mut after = 0;
                loop {
                    let (page, upto) = source.writes_after(o, after, limit);
                    for t in &page { dest.apply(t); }
                    dest.cover(o, upto);
                    if upto == after && page.is_empty() { break; }
                    after = upto;
                }
            }
            prop_assert_eq!(dest.entries(), source.entries());
            prop_assert_eq!(dest.vector(), source.vector());
        }
    }
}
