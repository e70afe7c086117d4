//! The RTSP server's protocol side: reading requests, what URLs name, absolute times, and the
//! session state machine.

pub mod clock;
pub mod digest;
pub mod reader;
pub mod session;
pub mod target;
