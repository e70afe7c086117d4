//! The video plane of Hive without I/O: what a frame is, how H.264/H.265 access units split into
//! NAL units, how frames become RTP packets and an SDP, how RTSP requests drive a session, and
//! how the archive lays frames out on disk and recovers them after a crash.
//!
//! The shell owns sockets, tasks and memory maps; everything here is pure and fuzzed, like
//! `hive-core`. The core never sees a frame.

pub mod archive;
pub mod fmp4;
pub mod frame;
pub mod nal;
pub mod relay;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
