//! The video plane of a server: test cameras, recording, live fan-out, archive playback and
//! the frame clock.

pub mod clock;
pub mod feed;
pub mod plane;
pub mod playback;
pub mod recorder;
pub mod status;
pub mod testcamera;
