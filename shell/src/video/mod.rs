//! The video plane of a server: live fan-out of camera streams.

pub mod feed;
pub mod testcamera;
