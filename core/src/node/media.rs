//! How a server reaches the next server toward a camera for a media channel: it dials the
//! neighbour when it dialled that neighbour's link too, and otherwise asks the neighbour, over
//! the link the neighbour opened, to dial a media channel back. A server behind NAT (nobody can
//! dial it) opened every link it has, so it is always asked, and always dials out. A dial that
//! fails falls back to asking too.
//!
//! The node only carries the request and names the address: the media channel itself, the
//! token's randomness and the video never touch the core.

use super::{LinkId, Node, Output};
use crate::ids::{PeerAddr, ServerId};
use crate::wire::Message;

/// How to open a media channel to the next server toward another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaHop {
    /// Dial `via` at these addresses, the one its link was dialled at first.
    Dial {
        /// The neighbour.
        via: ServerId,
        /// Where to dial it.
        addresses: Vec<PeerAddr>,
    },
    /// `via` opened its link to this server (it may be behind NAT): ask it to dial back.
    Callback {
        /// The neighbour.
        via: ServerId,
    },
}

impl Node {
    /// How to open a media channel toward `server` (this server itself has no hop), or `None`
    /// without a route.
    pub fn media_hop(&self, server: ServerId) -> Option<MediaHop> {
        let via = self.route_to(server)?.via;
        let link = self.links.get(self.peers.get(&via)?)?;
        let Some(dialed) = &link.dialed else { return Some(MediaHop::Callback { via }) };
        let mut addresses = vec![dialed.clone()];
        if let Some((_, record)) = self.servers().find(|(id, _)| *id == via) {
            addresses.extend(record.addresses.iter().filter(|a| *a != dialed).cloned());
        }
        Some(MediaHop::Dial { via, addresses })
    }

    /// The video plane asks neighbour `via` to dial a media channel back, opened with `token`.
    /// Nothing is sent without a link to it; the asker's wait runs out.
    pub(super) fn on_ask_media_dial(&mut self, via: ServerId, token: u128) {
        if let Some(&link) = self.peers.get(&via) {
            self.send(link, Message::DialMedia { token });
        }
    }

    /// A neighbour asked for a media channel back: dial it where its link was dialled, or, on
    /// a link it dialled (its own dial of us failed: our addresses changed, say), at the first
    /// address its server record names. Without either the ask is dropped; the asker's wait
    /// runs out.
    pub(super) fn on_dial_media(&mut self, link: LinkId, peer: ServerId, token: u128) {
        let dialed = self.links.get(&link).and_then(|l| l.dialed.clone());
        let recorded = || {
            let (_, record) = self.servers().find(|(id, _)| *id == peer)?;
            record.addresses.first().cloned()
        };
        if let Some(addr) = dialed.or_else(recorded) {
            self.outputs.push_back(Output::DialMedia { peer, addr, token });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::pair;
    use crate::node::Input;

    #[test]
    fn the_dialled_side_is_asked_to_dial_back_and_the_dialling_side_dials() {
        let (mut a, mut b, _) = pair();
        let (a_id, b_id) = (a.identity().server, b.identity().server);
        // In `pair`, a dialled b.
        assert!(matches!(a.media_hop(b_id), Some(MediaHop::Dial { via, .. }) if via == b_id));
        assert_eq!(b.media_hop(a_id), Some(MediaHop::Callback { via: a_id }));
        assert_eq!(a.media_hop(a_id), None, "a server has no hop to itself");

        b.handle(crate::node::testing::NOW, Input::AskMediaDial { via: a_id, token: 7 });
        let asked = b.drain_outputs().into_iter().find_map(|o| match o {
            Output::Send { msg: msg @ Message::DialMedia { .. }, .. } => Some(msg),
            _ => None,
        });
        let msg = asked.expect("b asks a over their link");
        let link = a.linked_peers().find(|(s, _)| *s == b_id).unwrap().1;
        let received = crate::instant::MonoUs(0);
        a.handle(crate::node::testing::NOW, Input::Message { link, msg, received });
        let dial = a.drain_outputs().into_iter().find_map(|o| match o {
            Output::DialMedia { peer, addr, token } => Some((peer, addr, token)),
            _ => None,
        });
        let (peer, addr, token) = dial.expect("a dials back");
        assert_eq!((peer, token), (b_id, 7));
        assert!(
            matches!(a.media_hop(b_id), Some(MediaHop::Dial { addresses, .. }) if addresses[0] == addr)
        );
    }
}
