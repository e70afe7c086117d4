//! `hive`: the Hive server. The [`driver`] runs a core node over real (or simulated) sockets,
//! timers and [`storage`].

pub mod driver;
pub mod storage;
