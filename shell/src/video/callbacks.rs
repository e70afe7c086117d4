//! Media channels this server asked a neighbour to dial back (the neighbour opened its link
//! to us and may be behind NAT, where nobody can dial it). Each ask has a random token; the
//! channel that opens with it, from the key of the server asked, goes to the one waiting.
//!
//! An ask that is never answered costs one entry until its waiter gives up (dropping the
//! [`Waiting`] removes it), and at most [`CALLBACKS_PENDING_MAX`] are pending at once.

use super::sealed::{SealedReader, SealedWriter};
use hive_core::keys::PublicKey;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::oneshot;

/// Asks for a channel back waiting at once at most.
pub const CALLBACKS_PENDING_MAX: usize = 256;

/// A media channel's two halves.
pub type Halves = (SealedReader, SealedWriter);

/// Why a channel that opened with a callback token was not taken.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRefused {
    /// No ask is waiting with that token (never made, or given up on).
    #[error("no ask is waiting for this channel")]
    Unknown,
    /// The channel came from another server than the one asked.
    #[error("the channel came from another server than the one asked")]
    WrongServer,
}

/// Too many asks are waiting already.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("{CALLBACKS_PENDING_MAX} asks for a media channel back are waiting already")]
pub struct TooManyWaiting;

struct Pending<C> {
    from: PublicKey,
    deliver: oneshot::Sender<C>,
}

/// The asks waiting for their channel `C` (a media channel's [`Halves`] in the server).
pub struct Callbacks<C = Halves> {
    pending: Arc<Mutex<BTreeMap<u128, Pending<C>>>>,
}

impl<C> Clone for Callbacks<C> {
    fn clone(&self) -> Self {
        Callbacks { pending: self.pending.clone() }
    }
}

impl<C> Default for Callbacks<C> {
    fn default() -> Self {
        Callbacks { pending: Arc::default() }
    }
}

/// One ask's wait; dropping it withdraws the ask.
pub struct Waiting<C = Halves> {
    token: u128,
    channel: oneshot::Receiver<C>,
    callbacks: Callbacks<C>,
}

impl<C> Callbacks<C> {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u128, Pending<C>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an ask to the server whose link key is `from`, under a fresh random token.
    pub fn ask(&self, from: PublicKey) -> Result<Waiting<C>, TooManyWaiting> {
        let mut pending = self.lock();
        if pending.len() >= CALLBACKS_PENDING_MAX {
            return Err(TooManyWaiting);
        }
        let token = loop {
            let token: u128 = rand::random();
            if !pending.contains_key(&token) {
                break token;
            }
        };
        let (deliver, channel) = oneshot::channel();
        pending.insert(token, Pending { from, deliver });
        Ok(Waiting { token, channel, callbacks: self.clone() })
    }

    /// A channel from the server with key `from` opened with `token`: hands it to its ask.
    pub fn deliver(&self, token: u128, from: PublicKey, channel: C) -> Result<(), CallbackRefused> {
        let mut pending = self.lock();
        match pending.get(&token) {
            None => return Err(CallbackRefused::Unknown),
            Some(p) if p.from != from => return Err(CallbackRefused::WrongServer),
            Some(_) => {}
        }
        let p = pending.remove(&token).expect("looked up above");
        p.deliver.send(channel).map_err(|_| CallbackRefused::Unknown)
    }

    /// Asks waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }
}

impl<C> Waiting<C> {
    /// The token the channel must open with.
    pub fn token(&self) -> u128 {
        self.token
    }

    /// The channel, once the server asked dials it; `None` if the ask was dropped.
    pub async fn channel(mut self) -> Option<C> {
        (&mut self.channel).await.ok()
    }
}

impl<C> Drop for Waiting<C> {
    fn drop(&mut self) {
        self.callbacks.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: PublicKey = PublicKey([1; 32]);
    const OTHER: PublicKey = PublicKey([2; 32]);

    #[tokio::test]
    async fn the_channel_with_the_token_from_the_server_asked_reaches_the_ask() {
        let callbacks: Callbacks<u32> = Callbacks::default();
        let waiting = callbacks.ask(ASKED).unwrap();
        let token = waiting.token();
        assert_eq!(callbacks.deliver(token ^ 1, ASKED, 1), Err(CallbackRefused::Unknown));
        assert_eq!(callbacks.deliver(token, OTHER, 2), Err(CallbackRefused::WrongServer));
        assert_eq!(callbacks.deliver(token, ASKED, 3), Ok(()));
        assert_eq!(waiting.channel().await, Some(3));
        assert_eq!(callbacks.deliver(token, ASKED, 4), Err(CallbackRefused::Unknown), "once");
        assert_eq!(callbacks.waiting(), 0);
    }

    #[test]
    fn a_dropped_ask_is_withdrawn_and_asks_are_bounded() {
        let callbacks: Callbacks<u32> = Callbacks::default();
        let asks: Vec<_> =
            (0..CALLBACKS_PENDING_MAX).map(|_| callbacks.ask(ASKED).unwrap()).collect();
        assert!(callbacks.ask(ASKED).is_err());
        let token = asks[0].token();
        drop(asks);
        assert_eq!(callbacks.waiting(), 0);
        assert_eq!(callbacks.deliver(token, ASKED, 1), Err(CallbackRefused::Unknown));
        assert!(callbacks.ask(ASKED).is_ok());
    }
}
