//! The video plane of a server: test cameras, recording, live fan-out, archive playback, the
//! frame clock, and video relayed through the hive.

pub mod callbacks;
pub mod clock;
pub mod feed;
pub mod plane;
pub mod playback;
pub mod recorder;
pub mod relay;
pub mod sealed;
pub mod status;
pub mod testcamera;
