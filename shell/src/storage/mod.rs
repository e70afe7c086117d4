//! Persistence of a server's replica: a crc32-framed, append-only transaction log plus
//! snapshots, over a small filesystem abstraction with a real and a simulated implementation.
//!
//! The layer stores opaque record bodies; the core encodes its records itself.

mod error;
mod faults;
mod fs;
mod generation;
mod log;
mod persistence;
mod recover;
mod sim_fs;
mod snapshot;
mod std_fs;

pub use error::{IoOp, StorageError};
pub use faults::{DiskFaults, FaultyFile, FaultyFs};
pub use fs::{AppendFile, Fs};
pub use generation::Generation;
pub use log::TxLog;
pub use persistence::{Loaded, Persistence, RecoveryReport};
pub use recover::{scan, Damage, IsRecord, RecordError, Recovered, TornTail};
pub use sim_fs::{SimFile, SimFs};
pub use snapshot::SnapshotError;
pub use std_fs::{StdFile, StdFs, DIR_MODE, FILE_MODE};
