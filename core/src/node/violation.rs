//! What a peer did that breaks the protocol: the reason the core closed its link, typed so
//! tests and the simulation's checker can match on it and logs can say it plainly.

use crate::resources::Key;

/// A step of an administrator's merge login, as the violations name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeStep {
    /// The initiator's login (`MergeMsg::Login`).
    Login,
    /// The remote's challenge (`MergeMsg::Challenge`).
    Challenge,
    /// The initiator's finish with its sealed offer (`MergeMsg::Finish`).
    Finish,
    /// The remote's sealed outcome (`MergeMsg::Accepted`).
    Outcome,
}

/// One kind of protocol violation the core detects; each closes the link.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A message other than `Hello` before the peer's `Hello`.
    #[error("unexpected {0} before Hello")]
    UnexpectedBeforeHello(&'static str),
    /// A message other than a merge step on a merge link.
    #[error("unexpected {0} on a merge link")]
    UnexpectedOnMergeLink(&'static str),
    /// A message that has no place on an established member link (a second `Hello`, a merge
    /// step).
    #[error("unexpected {0} on an established link")]
    UnexpectedOnMemberLink(&'static str),
    /// A `Hello` of another protocol version.
    #[error("protocol version {0}")]
    Version(u32),
    /// A `Writes` answer holding a transaction of an origin other than the one it names.
    #[error("Writes holding another origin's transaction")]
    WritesOfAnotherOrigin,
    /// A `Push` holding a transaction the sender did not write itself.
    #[error("Push of another server's transaction")]
    PushOfAnotherServer,
    /// A transaction whose value is not of its key's kind.
    #[error("value does not fit key {0:?}")]
    ValueDoesNotFitKey(Key),
    /// A merge step the link's merge is not waiting for.
    #[error("merge {0:?} out of order")]
    MergeOutOfOrder(MergeStep),
    /// A merge step on a link this server started no merge on.
    #[error("merge {0:?} on a link that asked for none")]
    MergeUnasked(MergeStep),
    /// A merge login that is not a valid OPAQUE message.
    #[error("malformed merge login")]
    MalformedMergeLogin,
    /// A sealed merge offer or outcome that does not open with the login's key, or does not
    /// decode.
    #[error("merge {0:?} does not open")]
    MergeSealBroken(MergeStep),
    /// An offer to keep the initiator's system that does not carry its secret.
    #[error("merge keeping the initiator without its secret")]
    MergeKeepsInitiatorWithoutSecret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_reads_as_a_sentence_naming_what_was_wrong() {
        assert_eq!(
            Violation::UnexpectedBeforeHello("Push").to_string(),
            "unexpected Push before Hello"
        );
        assert_eq!(Violation::Version(9).to_string(), "protocol version 9");
        assert_eq!(
            Violation::MergeOutOfOrder(MergeStep::Finish).to_string(),
            "merge Finish out of order"
        );
    }
}
