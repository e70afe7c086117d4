//! A link's outbound queues: a control lane and a bulk lane, both bounded, so a peer being
//! sent a large sync backlog still gets its pings, routes and time samples promptly, and a
//! peer that does not read costs a bounded amount of memory.
//!
//! The writer always drains the control lane first. Reordering between the lanes is safe
//! because applying writes is idempotent and order-independent (`Store::apply`): a small
//! message overtaking a batch of writes changes nothing the receiver concludes.

use super::TrafficStats;
use hive_core::wire::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Frames queued on a link's control lane at most. Larger than the bulk lane: one pass of the
/// driver loop may push the writes of up to `COMMANDS_PER_COMMIT_MAX` commands to each link
/// at once, each a small `Push` on this lane.
pub const CONTROL_FRAMES_MAX: usize = 1_024;
/// Frames queued on a link's bulk lane at most.
pub const BULK_FRAMES_MAX: usize = 256;
/// A `Push` of more transactions than this is bulk.
pub const PUSH_CONTROL_TXNS_MAX: usize = 16;

/// Which queue a message waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Small messages that must not wait behind sync: everything but batches of writes.
    Control,
    /// Batches of writes: answers to pulls, and large pushes.
    Bulk,
}

impl Lane {
    /// The lane of `msg`.
    pub fn of(msg: &Message) -> Lane {
        match msg {
            Message::Writes { .. } => Lane::Bulk,
            Message::Push { txns } if txns.len() > PUSH_CONTROL_TXNS_MAX => Lane::Bulk,
            _ => Lane::Control,
        }
    }
}

/// Why a frame could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The lane is full: the peer reads more slowly than we write.
    Full(Lane),
    /// The writer has ended.
    Closed,
}

/// The sending side of a link's lanes, held by the driver loop; never waits.
pub struct Outbox {
    control: mpsc::Sender<Vec<u8>>,
    bulk: mpsc::Sender<Vec<u8>>,
}

/// The receiving side, drained by the link's writer.
pub struct Inbox {
    control: mpsc::Receiver<Vec<u8>>,
    bulk: mpsc::Receiver<Vec<u8>>,
}

/// A link's two empty lanes.
pub fn lanes() -> (Outbox, Inbox) {
    let (control_tx, control_rx) = mpsc::channel(CONTROL_FRAMES_MAX);
    let (bulk_tx, bulk_rx) = mpsc::channel(BULK_FRAMES_MAX);
    (Outbox { control: control_tx, bulk: bulk_tx }, Inbox { control: control_rx, bulk: bulk_rx })
}

impl Outbox {
    /// Queues `frame` on `lane` without waiting.
    pub fn push(&self, lane: Lane, frame: Vec<u8>) -> Result<(), QueueError> {
        let tx = match lane {
            Lane::Control => &self.control,
            Lane::Bulk => &self.bulk,
        };
        tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full(lane),
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }
}

impl Inbox {
    /// The next frame, control first; `None` once both lanes are closed and drained.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        tokio::select! {
            biased;
            Some(frame) = self.control.recv() => Some(frame),
            Some(frame) = self.bulk.recv() => Some(frame),
            else => None,
        }
    }
}

/// Writes the frames of `inbox` to `wr`, each sealed by `seal`, until both lanes close (then
/// shuts `wr` down), a frame cannot be sealed or a write fails.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut inbox: Inbox,
    wr: &mut W,
    mut seal: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    stats: &TrafficStats,
) {
    while let Some(frame) = inbox.next().await {
        let Some(sealed) = seal(&frame) else { return };
        if wr.write_all(&sealed).await.is_err() {
            return;
        }
        stats.link_sent(sealed.len());
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_core::store::{ReplicaId, Transaction};
    use hive_core::wire::{Routed, RoutedBody};
    use tokio::io::AsyncReadExt;

    const FRAME_LEN: usize = 32;

    fn frame(tag: u8, n: u16) -> Vec<u8> {
        let mut f = vec![tag; FRAME_LEN];
        f[1..3].copy_from_slice(&n.to_be_bytes());
        f
    }

    /// Runs the writer over `inbox` and returns the frames in the order written.
    async fn written(inbox: Inbox) -> Vec<Vec<u8>> {
        let (mut wr, mut rd) = tokio::io::duplex(4 * FRAME_LEN);
        let stats = TrafficStats::default();
        let writer = write_frames(inbox, &mut wr, |f| Some(f.to_vec()), &stats);
        let mut bytes = Vec::new();
        let (_, read) = tokio::join!(writer, rd.read_to_end(&mut bytes));
        read.unwrap();
        bytes.chunks(FRAME_LEN).map(<[u8]>::to_vec).collect()
    }

    #[tokio::test]
    async fn a_control_frame_queued_behind_a_full_bulk_lane_is_written_first() {
        let (outbox, inbox) = lanes();
        for n in 0..BULK_FRAMES_MAX as u16 {
            outbox.push(Lane::Bulk, frame(b'b', n)).unwrap();
        }
        assert_eq!(outbox.push(Lane::Bulk, frame(b'b', 0)), Err(QueueError::Full(Lane::Bulk)));
        outbox.push(Lane::Control, frame(b'c', 0)).unwrap();
        drop(outbox);
        let frames = written(inbox).await;
        assert_eq!(frames.len(), BULK_FRAMES_MAX + 1);
        assert_eq!(frames[0], frame(b'c', 0), "the control frame overtakes every bulk frame");
        let bulk: Vec<_> = (0..BULK_FRAMES_MAX as u16).map(|n| frame(b'b', n)).collect();
        assert_eq!(frames[1..], bulk[..], "bulk frames keep their order");
    }

    #[tokio::test]
    async fn a_control_frame_queued_behind_a_thousand_bulk_frames_overtakes_those_still_queued() {
        let (outbox, inbox) = lanes();
        let (mut wr, mut rd) = tokio::io::duplex(4 * FRAME_LEN);
        let writer = tokio::spawn(async move {
            write_frames(inbox, &mut wr, |f| Some(f.to_vec()), &TrafficStats::default()).await
        });
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            rd.read_to_end(&mut bytes).await.map(|_| bytes)
        });
        // 1000 bulk frames as fast as the lane takes them (it holds 256), then one control frame.
        let mut n = 0u16;
        while n < 1_000 {
            match outbox.push(Lane::Bulk, frame(b'b', n)) {
                Ok(()) => n += 1,
                Err(QueueError::Full(_)) => tokio::task::yield_now().await,
                Err(QueueError::Closed) => panic!("writer ended"),
            }
        }
        outbox.push(Lane::Control, frame(b'c', 0)).unwrap();
        drop(outbox);
        writer.await.unwrap();
        let bytes = reader.await.unwrap().unwrap();
        let frames: Vec<_> = bytes.chunks(FRAME_LEN).collect();
        assert_eq!(frames.len(), 1_001);
        let at = frames.iter().position(|f| f[0] == b'c').unwrap();
        let bulk_after = frames.len() - 1 - at;
        assert!(bulk_after >= BULK_FRAMES_MAX / 2, "only {bulk_after} bulk frames after control");
    }

    #[test]
    fn batches_of_writes_are_bulk_and_everything_else_is_control() {
        let origin = ReplicaId { server: hive_core::ids::ServerId(1), epoch: 0 };
        let txn = |seq| Transaction {
            origin,
            seq,
            hlc: hive_core::hlc::Hlc { wall_ms: seq, logical: 0 },
            key: hive_core::resources::Key::Setting {
                system: hive_core::ids::SystemId(1),
                name: format!("s{seq}"),
            },
            value: None,
        };
        let few: Vec<_> = (1..=PUSH_CONTROL_TXNS_MAX as u64).map(txn).collect();
        let many: Vec<_> = (1..=PUSH_CONTROL_TXNS_MAX as u64 + 1).map(txn).collect();
        assert_eq!(Lane::of(&Message::Writes { origin, upto: 1, txns: vec![] }), Lane::Bulk);
        assert_eq!(Lane::of(&Message::Push { txns: many }), Lane::Bulk);
        assert_eq!(Lane::of(&Message::Push { txns: few }), Lane::Control);
        assert_eq!(Lane::of(&Message::Ping), Lane::Control);
        assert_eq!(Lane::of(&Message::Reach { routes: vec![] }), Lane::Control);
        let sample = Routed {
            from: hive_core::ids::ServerId(1),
            to: hive_core::ids::ServerId(2),
            ttl: 8,
            body: RoutedBody::TimeRequest { id: 1 },
        };
        assert_eq!(Lane::of(&Message::Routed(sample)), Lane::Control);
        assert_eq!(Lane::of(&Message::Pull { origin, after: 0, limit: 1 }), Lane::Control);
    }
}
