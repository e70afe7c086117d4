//! The video plane of a server: test cameras, recording, live fan-out, the frame clock.

pub mod clock;
pub mod feed;
pub mod recorder;
pub mod status;
pub mod testcamera;
