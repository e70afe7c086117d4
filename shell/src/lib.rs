//! `hive`: the Hive server. The [`driver`] runs a core node over real (or simulated) sockets,
//! timers and [`storage`]; [`server`] adds the [`api`]; [`cli`] is the `hive` command;
//! [`time`] asks NTP servers for the time.

pub mod api;
pub mod archive;
pub mod cli;
pub mod config;
pub mod driver;
pub mod fingerprint;
pub mod hardware;
pub mod rtsp;
pub mod server;
pub mod storage;
pub mod time;
pub mod video;
