//! Identifiers the appliance hands out: `ak_` signing keys, `az_` authorizations, `usr_` users,
//! `pnd_` co-signed requests, `neg_` negotiations, `apk_` API keys, `apr_` approval requests
//! `dec_` decisions, `aut_` authenticators, `whk_` webhook endpoints and `msg_` webhook
//! messages, each a prefix and 128 random bits from the
//! token in lowercase base32 (RFC 4648 alphabet, no padding).

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Base32 length of 16 bytes.
const ENCODED_LEN: usize = 26;

/// What an identifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    SigningKey,
    Authorization,
    User,
    Pending,
    Negotiation,
    ApiKey,
    Approval,
    Decision,
    Authenticator,
    WebhookEndpoint,
    Message,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::SigningKey => "ak_",
            IdKind::Authorization => "az_",
            IdKind::User => "usr_",
            IdKind::Pending => "pnd_",
            IdKind::Negotiation => "neg_",
            IdKind::ApiKey => "apk_",
            IdKind::Approval => "apr_",
            IdKind::Decision => "dec_",
            IdKind::Authenticator => "aut_",
            IdKind::WebhookEndpoint => "whk_",
            IdKind::Message => "msg_",
        }
    }

    /// A new identifier from 16 random bytes.
    pub fn make(self, random: [u8; 16]) -> String {
        format!("{}{}", self.prefix(), base32(&random))
    }

    /// Whether `text` has this kind's shape. Shape only: whether it exists is the store's business.
    pub fn matches(self, text: &str) -> bool {
        text.strip_prefix(self.prefix()).is_some_and(|rest| {
            rest.len() == ENCODED_LEN && rest.bytes().all(|b| ALPHABET.contains(&b))
        })
    }
}

/// RFC 4648 base32 in lower case, without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(&[0xff; 16]).len(), ENCODED_LEN);
    }

    #[test]
    fn ids_have_their_shape() {
        let id = IdKind::SigningKey.make([7; 16]);
        assert!(id.starts_with("ak_"));
        assert!(IdKind::SigningKey.matches(&id));
        assert!(!IdKind::User.matches(&id));
        assert!(!IdKind::SigningKey.matches("ak_short"));
        assert!(!IdKind::SigningKey.matches(&id.to_uppercase()));
        assert_ne!(IdKind::SigningKey.make([8; 16]), id);
    }
}
