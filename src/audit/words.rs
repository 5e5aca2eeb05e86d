//! What an audit entry says happened ([`Action`]) and how it ended ([`Outcome`]): enums that
//! serialize to the words entries have always used, so entries already in a log read, and hash,
//! the same. A word this build does not know (written by another version) reads as `Other` and
//! writes back unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An enum of words with an escape for unknown ones, serialized as the word.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A word this build does not know, kept as written.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)*
                    $name::Other(word) => word,
                }
            }

            fn from_word(word: &str) -> Self {
                match word {
                    $($word => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl Default for $name {
            /// No word yet: entries are built, then told what happened.
            fn default() -> Self {
                $name::Other(String::new())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::from_word(&String::deserialize(d)?))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// What happened.
    Action {
        CreateKey = "create_key",
        Authorize = "authorize",
        RevokeAuthorization = "revoke_authorization",
        RevokeKey = "revoke_key",
        /// A signature made (or refused) on the caller's own authority.
        Sign = "sign",
        /// The token failed after the entry was written; nothing was signed.
        SignFailed = "sign_failed",
        CosignRequest = "cosign_request",
        CosignExpired = "cosign_expired",
        /// A principal approved a signature request.
        Approve = "approve",
        /// A principal denied a signature request, or its terms no longer held.
        Deny = "deny",
        EvidenceSeal = "evidence_seal",
        Offer = "offer",
        ApiKeyCreate = "api_key_create",
        ApiKeyRevoke = "api_key_revoke",
        ApprovalRequest = "approval_request",
        ApprovalVote = "approval_vote",
        ApprovalDecisionSigned = "approval_decision_signed",
        ApprovalExpired = "approval_expired",
        EnrollmentLink = "enrollment_link",
        AuthenticatorAdd = "authenticator_add",
        AuthenticatorRemove = "authenticator_remove",
        AuthenticatorReopen = "authenticator_reopen",
        TotpFailed = "totp_failed",
        WebhookEndpointAdd = "webhook_endpoint_add",
        WebhookEndpointRemove = "webhook_endpoint_remove",
        NotifyTarget = "notify_target",
        WebhookSend = "webhook_send",
        WebhookDelivery = "webhook_delivery",
        ConsentAllow = "consent_allow",
        ConsentRevoke = "consent_revoke",
        /// A link code issued for another SSH key.
        SshKeyLinkStart = "ssh_key_link_start",
        /// An SSH key joined the identity (with proof that its holder has it).
        SshKeyLink = "ssh_key_link",
        SshKeyUnlink = "ssh_key_unlink",
        /// The appliance started signing checkpoints with a new generation of its key.
        CheckpointKeyHandover = "checkpoint_key_handover",
    }
}

words! {
    /// How it ended.
    Outcome {
        Done = "done",
        Signed = "signed",
        Denied = "denied",
        Failed = "failed",
        Pending = "pending",
        Expired = "expired",
        Refused = "refused",
        Recorded = "recorded",
        Issued = "issued",
        Set = "set",
        Cleared = "cleared",
        /// A vote that did not yet resolve its request.
        Voted = "voted",
        Approved = "approved",
        Rejected = "rejected",
        Sending = "sending",
        Delivered = "delivered",
        Gone = "gone",
    }
}

impl Outcome {
    /// The outcome named by a status or state word (`approved`, `delivered`, …).
    pub fn from_status(word: &str) -> Self {
        Outcome::from_word(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_are_kept() {
        for (action, word) in [
            (Action::CreateKey, "create_key"),
            (Action::ApprovalDecisionSigned, "approval_decision_signed"),
            (Action::TotpFailed, "totp_failed"),
        ] {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
        }
        let newer: Action = serde_json::from_str("\"rotate_key\"").unwrap();
        assert_eq!(newer, Action::Other("rotate_key".into()));
        assert_eq!(serde_json::to_string(&newer).unwrap(), "\"rotate_key\"");
        assert_eq!(Outcome::from_status("delivered"), Outcome::Delivered);
        assert_eq!(serde_json::to_string(&Outcome::default()).unwrap(), "\"\"");
    }
}
