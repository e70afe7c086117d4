//! hive

pub mod storage;
