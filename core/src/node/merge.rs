//! An administrator's merge of two systems over a merge link.
//!
//! The initiator dials a merge channel (Noise without the secret: the two systems share no
//! key) and logs in as an administrator of the other system with OPAQUE, bound to the
//! channel's handshake hash. Nothing about either system crosses before the login succeeds:
//!
//! 1. initiator → `Login { user, ke1 }`
//! 2. remote → `Challenge { ke2, params }` (from a dummy record for unknown users and users
//!    who may not merge, indistinguishably; refused outright while the name is backing off)
//! 3. initiator → `Finish { ke3, offer }`, the [`MergeOffer`] sealed under the session key
//! 4. remote → `Accepted { outcome }`, the [`MergeOutcome`] sealed likewise, or `Refused`
//!
//! Failures are counted per user name *before* the login's work, with a back-off that doubles
//! up to a minute: guessing slows to a crawl, and the owner is never locked out for longer.

use super::{
    CommandError, CommandId, Event, Keep, LinkId, MergeStep, Node, Output, Reply, Violation,
};
use crate::ids::{PeerAddr, ServerId};
use crate::instant::MonoMs;
use crate::login::{self, ClientState, Direction, ServerState, SessionKey};
use crate::resources::{Key, Role, Value};
use crate::wire::{MergeMsg, MergeOffer, MergeOutcome, MergeRefusal, Message};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Failures per user name allowed before the back-off starts.
pub const MERGE_FAILURES_FREE: u32 = 3;
/// Longest back-off between merge logins of one user name.
pub const MERGE_BACKOFF_MS_MAX: u64 = 60_000;
/// User names whose failures are remembered (the oldest window is forgotten first).
const FAILURE_NAMES_MAX: usize = 1_024;
/// Merge logins answered at once; more are refused as busy.
const INCOMING_MAX: usize = 8;

/// A merge this server's administrator asked for.
pub(super) struct OutgoingMerge {
    pub id: CommandId,
    pub user: String,
    pub password: String,
    pub keep: Keep,
    pub link: Option<LinkId>,
    stage: Outgoing,
}

enum Outgoing {
    /// Dialling, or waiting for the remote's challenge.
    Started(Option<Box<ClientState>>),
    /// Offer sent under this key; waiting for the outcome.
    Finished(SessionKey),
}

/// A merge another system's administrator started here.
enum Incoming {
    AwaitLogin,
    AwaitFinish { user: String, state: Box<ServerState> },
}

#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    /// No login of this name is answered before this.
    until: MonoMs,
}

#[derive(Default)]
pub(super) struct MergeState {
    pub outgoing: BTreeMap<PeerAddr, OutgoingMerge>,
    incoming: BTreeMap<LinkId, Incoming>,
    failures: BTreeMap<String, Failures>,
}

impl OutgoingMerge {
    pub fn new(id: CommandId, user: String, password: String, keep: Keep) -> Self {
        OutgoingMerge { id, user, password, keep, link: None, stage: Outgoing::Started(None) }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory");
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    ciborium::from_reader(bytes).ok()
}

fn backoff_ms(count: u32) -> u64 {
    match count.checked_sub(MERGE_FAILURES_FREE) {
        None => 0,
        Some(over) => (1_000u64 << over.min(16)).min(MERGE_BACKOFF_MS_MAX),
    }
}

impl Node {
    /// A merge channel is up: the initiator starts the login; the remote waits for it.
    pub(super) fn on_merge_link_opened(&mut self, link: LinkId, dialed: Option<PeerAddr>) {
        let Some(addr) = dialed else {
            if self.merges.incoming.len() >= INCOMING_MAX {
                self.send(link, Message::Merge(MergeMsg::Refused(MergeRefusal::Busy)));
                return self.close(link);
            }
            self.merges.incoming.insert(link, Incoming::AwaitLogin);
            return;
        };
        let Some(m) = self.merges.outgoing.get_mut(&addr).filter(|m| m.link.is_none()) else {
            // Nobody asked for this merge any more.
            return self.close(link);
        };
        m.link = Some(link);
        let password = m.password.clone();
        let user = m.user.clone();
        match login::client_start(&password, &mut self.crypto_rng) {
            Ok((state, ke1)) => {
                if let Some(m) = self.merges.outgoing.get_mut(&addr) {
                    m.stage = Outgoing::Started(Some(Box::new(state)));
                }
                self.send(link, Message::Merge(MergeMsg::Login { user, ke1 }));
            }
            Err(_) => self.fail_outgoing(link, MergeRefusal::BadCredentials),
        }
    }

    pub(super) fn merge_link_closed(&mut self, link: LinkId) {
        if let Some(Incoming::AwaitFinish { user, .. }) = self.merges.incoming.remove(&link) {
            // The initiator gave up after the challenge: its password did not open it.
            self.merge_login_failed(user);
        }
        let gone: Vec<_> = self
            .merges
            .outgoing
            .iter()
            .filter(|(_, m)| m.link == Some(link))
            .map(|(a, _)| a.clone())
            .collect();
        for addr in gone {
            let m = self.merges.outgoing.remove(&addr).expect("just found");
            self.outputs.push_back(Output::Reply {
                id: m.id,
                result: Err(CommandError::Unreachable(addr)),
            });
        }
    }

    pub(super) fn merge_dial_failed(&mut self, addr: &PeerAddr) {
        if let Some(m) = self.merges.outgoing.get(addr).filter(|m| m.link.is_none()) {
            let id = m.id;
            self.merges.outgoing.remove(addr);
            self.outputs.push_back(Output::Reply {
                id,
                result: Err(CommandError::Unreachable(addr.clone())),
            });
        }
    }

    pub(super) fn on_merge_message(&mut self, link: LinkId, msg: MergeMsg) {
        match msg {
            MergeMsg::Login { user, ke1 } => self.on_merge_login(link, user, &ke1),
            MergeMsg::Challenge { ke2, params } => self.on_merge_challenge(link, &ke2, params),
            MergeMsg::Finish { ke3, offer } => self.on_merge_finish(link, &ke3, &offer),
            MergeMsg::Accepted { outcome } => self.on_merge_accepted(link, &outcome),
            MergeMsg::Refused(why) => self.fail_outgoing(link, why),
        }
    }

    /// Remote: answers a login, after counting it as a failure until it succeeds.
    fn on_merge_login(&mut self, link: LinkId, user: String, ke1: &[u8]) {
        if !matches!(self.merges.incoming.get(&link), Some(Incoming::AwaitLogin)) {
            return self.violation(link, Violation::MergeOutOfOrder(MergeStep::Login));
        }
        let now = self.now.mono;
        let f = self.merges.failures.get(&user).copied().unwrap_or_default();
        if now < f.until {
            let why =
                MergeRefusal::TooManyAttempts { retry_after_ms: f.until.saturating_since(now) };
            return self.refuse(link, why);
        }
        self.count_merge_failure(&user);
        let record = self
            .user(&user)
            .filter(|(_, u)| matches!(u.role, Role::Owner | Role::Admin))
            .and_then(|(_, u)| u.login.clone());
        let params = record.as_ref().map_or(self.config.kdf, |r| r.params);
        let dummy = login::dummy_setup(self.identity.secret.dummy_login_seed());
        let context = self.links[&link].channel.handshake_hash;
        let rng = &mut self.crypto_rng;
        match login::server_start(record.as_ref(), &dummy, &user, ke1, &context, rng) {
            Ok((state, ke2)) => {
                self.merges
                    .incoming
                    .insert(link, Incoming::AwaitFinish { user, state: Box::new(state) });
                self.send(link, Message::Merge(MergeMsg::Challenge { ke2, params }));
            }
            Err(_) => self.violation(link, Violation::MalformedMergeLogin),
        }
    }

    /// Counts a failure of `user` (before the work it guards), keeping the table bounded.
    fn count_merge_failure(&mut self, user: &str) {
        let table = &mut self.merges.failures;
        if !table.contains_key(user) && table.len() >= FAILURE_NAMES_MAX {
            let oldest = table.iter().min_by_key(|(_, f)| f.until).map(|(n, _)| n.clone());
            if let Some(name) = oldest {
                table.remove(&name);
            }
        }
        let f = table.entry(user.to_owned()).or_default();
        f.count = f.count.saturating_add(1);
        f.until = self.now.mono.plus_ms(backoff_ms(f.count));
    }

    /// Reports a failed merge login (already counted when it started).
    fn merge_login_failed(&mut self, user: String) {
        let failures = self.merges.failures.get(&user).map_or(1, |f| f.count);
        self.event(Event::MergeLoginFailed { user, failures });
    }

    /// Initiator: checks the remote's answer against the password and sends the sealed offer.
    fn on_merge_challenge(&mut self, link: LinkId, ke2: &[u8], params: crate::auth::KdfParams) {
        if !params.within_limit() {
            return self.fail_outgoing(link, MergeRefusal::UnreasonableChallenge);
        }
        let context = self.links[&link].channel.handshake_hash;
        let Some(m) = self.merges.outgoing.values_mut().find(|m| m.link == Some(link)) else {
            return self.violation(link, Violation::MergeUnasked(MergeStep::Challenge));
        };
        let Outgoing::Started(Some(state)) =
            std::mem::replace(&mut m.stage, Outgoing::Started(None))
        else {
            return self.violation(link, Violation::MergeOutOfOrder(MergeStep::Challenge));
        };
        let keep_initiator = m.keep == Keep::Local;
        let password = m.password.clone();
        let Ok((ke3, key)) = login::client_finish(*state, &password, ke2, params, &context) else {
            // Wrong password, unknown user, or a channel relayed by a man in the middle.
            return self.fail_outgoing(link, MergeRefusal::BadCredentials);
        };
        let offer = MergeOffer {
            system: self.identity.system,
            name: self.identity.name.clone(),
            keep_initiator,
            servers: self.own_servers(),
            secret: keep_initiator.then(|| self.identity.secret.clone()),
        };
        let sealed = login::seal(&key, Direction::ToRemote, &encode(&offer));
        if let Some(m) = self.merges.outgoing.values_mut().find(|m| m.link == Some(link)) {
            m.stage = Outgoing::Finished(key);
        }
        self.send(link, Message::Merge(MergeMsg::Finish { ke3, offer: sealed }));
    }

    /// Remote: checks the finalization, then merges as the offer says.
    fn on_merge_finish(&mut self, link: LinkId, ke3: &[u8], offer: &[u8]) {
        let Some(Incoming::AwaitFinish { user, state }) = self.merges.incoming.remove(&link) else {
            return self.violation(link, Violation::MergeOutOfOrder(MergeStep::Finish));
        };
        let Ok(key) = login::server_finish(*state, ke3) else {
            self.merge_login_failed(user);
            return self.refuse(link, MergeRefusal::BadCredentials);
        };
        self.merges.failures.remove(&user);
        let Some(offer) = login::open(&key, Direction::ToRemote, offer)
            .ok()
            .and_then(|b| decode::<MergeOffer>(&b))
        else {
            return self.violation(link, Violation::MergeSealBroken(MergeStep::Finish));
        };
        if offer.system == self.identity.system {
            return self.refuse(link, MergeRefusal::SameSystem);
        }
        if overlap(&offer.servers, &self.own_servers()) {
            return self.refuse(link, MergeRefusal::ServerOnBothSides);
        }
        let stamp = self.clock.tick(self.now.wall);
        let outcome = if offer.keep_initiator {
            let Some(secret) = offer.secret else {
                return self.violation(link, Violation::MergeKeepsInitiatorWithoutSecret);
            };
            self.adopt(offer.system, offer.name.clone(), stamp, Some(secret));
            MergeOutcome { system: offer.system, name: offer.name, secret: None }
        } else {
            MergeOutcome {
                system: self.identity.system,
                name: self.identity.name.clone(),
                secret: Some(self.identity.secret.clone()),
            }
        };
        let sealed = login::seal(&key, Direction::ToInitiator, &encode(&outcome));
        self.send(link, Message::Merge(MergeMsg::Accepted { outcome: sealed }));
    }

    /// Initiator: adopts the kept identity and answers the administrator.
    fn on_merge_accepted(&mut self, link: LinkId, outcome: &[u8]) {
        let Some((addr, m)) = self.take_outgoing(link) else {
            return self.violation(link, Violation::MergeUnasked(MergeStep::Outcome));
        };
        let outcome = match &m.stage {
            Outgoing::Finished(key) => login::open(key, Direction::ToInitiator, outcome)
                .ok()
                .and_then(|b| decode::<MergeOutcome>(&b)),
            Outgoing::Started(_) => None,
        };
        // Keeping the remote side needs its secret; keeping ours needs nothing back.
        let Some(o) = outcome.filter(|o| m.keep == Keep::Local || o.secret.is_some()) else {
            let why = CommandError::MergeRefused(MergeRefusal::NotVerified);
            self.outputs.push_back(Output::Reply { id: m.id, result: Err(why) });
            return self.violation(link, Violation::MergeSealBroken(MergeStep::Outcome));
        };
        if m.keep == Keep::Remote {
            let stamp = self.clock.tick(self.now.wall);
            self.adopt(o.system, o.name, stamp, o.secret);
        }
        let merged = Ok(Reply::Merged { system: o.system });
        self.outputs.push_back(Output::Reply { id: m.id, result: merged });
        // Remember the address so every server of the merged system can reach the other side.
        self.write(vec![(Key::ManualAddress(addr), Some(Value::ManualAddress))]);
        self.close(link);
    }

    fn refuse(&mut self, link: LinkId, why: MergeRefusal) {
        self.send(link, Message::Merge(MergeMsg::Refused(why)));
        self.close(link);
    }

    /// Initiator: the merge on `link` ends with `why`.
    fn fail_outgoing(&mut self, link: LinkId, why: MergeRefusal) {
        if let Some((_, m)) = self.take_outgoing(link) {
            self.outputs.push_back(Output::Reply {
                id: m.id,
                result: Err(CommandError::MergeRefused(why)),
            });
        }
        self.close(link);
    }

    fn take_outgoing(&mut self, link: LinkId) -> Option<(PeerAddr, OutgoingMerge)> {
        let addr = self
            .merges
            .outgoing
            .iter()
            .find(|(_, m)| m.link == Some(link))
            .map(|(a, _)| a.clone())?;
        self.merges.outgoing.remove(&addr).map(|m| (addr, m))
    }

    pub(super) fn own_servers(&self) -> Vec<ServerId> {
        self.servers().map(|(s, _)| s).collect()
    }
}

fn overlap(a: &[ServerId], b: &[ServerId]) -> bool {
    let a: BTreeSet<_> = a.iter().collect();
    b.iter().any(|s| a.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_starts_after_the_free_failures_and_is_capped() {
        assert_eq!(backoff_ms(MERGE_FAILURES_FREE - 1), 0);
        assert_eq!(backoff_ms(MERGE_FAILURES_FREE), 1_000);
        assert_eq!(backoff_ms(MERGE_FAILURES_FREE + 1), 2_000);
        assert_eq!(backoff_ms(u32::MAX), MERGE_BACKOFF_MS_MAX);
    }
}

#[cfg(test)]
mod two_node_tests {
    use super::*;
    use crate::instant::MonoUs;
    use crate::node::{ChannelInfo, ChannelKind, Event, Input};

    use crate::node::testing::{node, NOW};

    /// Runs a merge from `a` to `b` as `user` with `password`; the hashes of the two ends'
    /// channels may differ (a relay). Returns a's reply, the messages b sent, and b's events.
    fn merge(
        a: &mut Node,
        b: &mut Node,
        user: &str,
        password: &str,
        hashes: ([u8; 32], [u8; 32]),
    ) -> (Option<Result<Reply, CommandError>>, Vec<MergeMsg>, Vec<Event>) {
        let addr = PeerAddr("10.0.0.2:7001".into());
        let cmd = super::super::Command::Merge {
            addr: addr.clone(),
            user: user.into(),
            password: password.into(),
            keep: Keep::Remote,
        };
        a.handle(NOW, Input::Command { id: CommandId(1), cmd });
        let (la, lb) = (LinkId(1), LinkId(2));
        let info = |key, hash| ChannelInfo {
            kind: ChannelKind::Merge,
            peer_key: key,
            handshake_hash: hash,
        };
        let (ka, kb) = (a.channel_keys().0.public, b.channel_keys().0.public);
        b.handle(NOW, Input::LinkOpened { link: lb, dialed: None, channel: info(ka, hashes.1) });
        a.handle(
            NOW,
            Input::LinkOpened { link: la, dialed: Some(addr), channel: info(kb, hashes.0) },
        );
        let (mut reply, mut from_b, mut events) = (None, Vec::new(), Vec::new());
        for _ in 0..20 {
            let mut to_b = Vec::new();
            while let Some(o) = a.poll_output() {
                match o {
                    Output::Send { msg, .. } => {
                        to_b.push(Input::Message { link: lb, msg, received: MonoUs(0) })
                    }
                    Output::Close(_) => to_b.push(Input::LinkClosed { link: lb }),
                    Output::Reply { id: CommandId(1), result } => reply = Some(result),
                    _ => {}
                }
            }
            for i in to_b {
                b.handle(NOW, i);
            }
            let mut to_a = Vec::new();
            while let Some(o) = b.poll_output() {
                match o {
                    Output::Send { msg, .. } => {
                        if let Message::Merge(m) = &msg {
                            from_b.push(m.clone());
                        }
                        to_a.push(Input::Message { link: la, msg, received: MonoUs(0) });
                    }
                    Output::Close(_) => to_a.push(Input::LinkClosed { link: la }),
                    Output::Event(e) => events.push(e),
                    _ => {}
                }
            }
            if to_a.is_empty() && reply.is_some() {
                break;
            }
            for i in to_a {
                a.handle(NOW, i);
            }
        }
        (reply, from_b, events)
    }

    #[test]
    fn the_right_owner_password_merges_and_hands_over_the_kept_secret() {
        let (mut a, mut b) = (node("north", 1), node("south", 2));
        let (reply, _, _) = merge(&mut a, &mut b, "owner", "pw-right", ([7; 32], [7; 32]));
        assert_eq!(reply, Some(Ok(Reply::Merged { system: b.identity.system })));
        assert_eq!(a.identity.system, b.identity.system);
        assert_eq!(a.identity.secret, b.identity.secret);
    }

    #[test]
    fn a_wrong_password_an_unknown_user_and_a_viewer_fail_alike_and_reveal_nothing() {
        let mut shapes = Vec::new();
        for user in ["owner", "nobody", "viewer"] {
            let (mut a, mut b) = (node("north", 1), node("south", 2));
            let before = (b.identity.clone(), b.store.clone());
            let password = if user == "owner" { "pw-wrong" } else { "pw-right" };
            let (reply, from_b, _) = merge(&mut a, &mut b, user, password, ([7; 32], [7; 32]));
            assert_eq!(reply, Some(Err(CommandError::MergeRefused(MergeRefusal::BadCredentials))));
            assert_ne!(a.identity.system, b.identity.system);
            assert_eq!((b.identity.clone(), b.store.clone()), before);
            // Only the challenge crossed: no identity, name or server list.
            let [MergeMsg::Challenge { ke2, params }] = from_b.as_slice() else {
                panic!("{user}: {from_b:?}")
            };
            shapes.push((ke2.len(), *params));
        }
        assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
    }

    #[test]
    fn a_relayed_merge_channel_fails_the_login() {
        let (mut a, mut b) = (node("north", 1), node("south", 2));
        let (reply, _, _) = merge(&mut a, &mut b, "owner", "pw-right", ([7; 32], [8; 32]));
        assert_eq!(reply, Some(Err(CommandError::MergeRefused(MergeRefusal::BadCredentials))));
        assert_ne!(a.identity.system, b.identity.system);
    }

    #[test]
    fn guessing_backs_off_after_a_few_failures_and_each_is_reported() {
        let mut b = node("south", 2);
        let mut refusals = Vec::new();
        let mut reported = 0;
        for _ in 0..MERGE_FAILURES_FREE + 2 {
            let mut a = node("north", 1);
            let (reply, _, events) = merge(&mut a, &mut b, "owner", "pw-wrong", ([7; 32], [7; 32]));
            refusals.push(reply);
            reported +=
                events.iter().filter(|e| matches!(e, Event::MergeLoginFailed { .. })).count();
        }
        let last = refusals.last().cloned().flatten();
        assert!(
            matches!(
                last,
                Some(Err(CommandError::MergeRefused(MergeRefusal::TooManyAttempts { .. })))
            ),
            "{refusals:?}"
        );
        assert!(reported >= MERGE_FAILURES_FREE as usize, "{reported}");
    }
}
