//! Publisher tokens: random secrets shown once, kept in configuration as a SHA-256 hash.
//!
//! A token carries 256 random bits, so a fast hash is enough: there is nothing to brute-force
//! that a slow hash would protect. Comparison is constant-time.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted in a configuration.
pub const MIN_LENGTH: usize = 16;
/// Plaintext tokens shorter than this are weak (an error unless the publisher has
/// `allow_weak_token`): `wikiwire token` makes 47 characters.
pub const STRONG_LENGTH: usize = 32;
/// Plaintext tokens with fewer different characters than this are weak, however long
/// (`passwordpassword…`, a number): 43 random base64 characters have about 30.
pub const STRONG_DISTINCT: usize = 16;
const PREFIX: &str = "wwt_";

/// A new token: `wwt_` and 43 characters of URL-safe base64.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's random source failing is not something to recover from.
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Why a plaintext token is easy to guess, or `None` when it is strong: at least
/// [`STRONG_LENGTH`] characters, of which at least [`STRONG_DISTINCT`] different ones.
pub fn weakness(token: &str) -> Option<String> {
    let length = token.chars().count();
    if length < STRONG_LENGTH {
        return Some(format!("only {length} characters (a strong token has at least {STRONG_LENGTH})"));
    }
    let mut seen: Vec<char> = token.chars().collect();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() < STRONG_DISTINCT {
        return Some(format!(
            "only {} different characters (a strong token has at least {STRONG_DISTINCT})",
            seen.len()
        ));
    }
    None
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `sha256:<64 hex digits>`, the form `token_hash` takes.
pub fn format_hash(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

pub fn parse_hash(text: &str) -> Result<[u8; 32], &'static str> {
    let digits = text.strip_prefix("sha256:").ok_or("must start with sha256:")?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(digits, &mut hash).map_err(|_| "sha256: must be followed by 64 hex digits")?;
    Ok(hash)
}

/// Two secrets compared in constant time, their lengths included: both are hashed first, so the
/// comparison always runs over 32 bytes (a plain slice comparison stops at a length mismatch).
pub fn same_secret(given: &str, expected: &str) -> bool {
    hash(given).ct_eq(&hash(expected)).into()
}

/// Whether `token` hashes to `expected`, in time independent of where they differ.
pub fn verify(token: &str, expected: &[u8; 32]) -> bool {
    hash(token).ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("xmlrpc-secret", "xmlrpc-secret"));
        assert!(!same_secret("xmlrpc-secre", "xmlrpc-secret"));
        assert!(!same_secret("", "xmlrpc-secret"));
    }

    #[test]
    fn weak_tokens_are_short_or_repetitive() {
        assert!(weakness(&generate()).is_none());
        assert!(weakness("wwt_moin-token-for-python-tests").unwrap().contains("only 31 characters"));
        assert!(weakness(&"password".repeat(5)).unwrap().contains("only 7 different characters"));
        assert!(weakness("0123456789012345678901234567890123456789").unwrap().contains("10 different"));
        assert!(weakness("wwt_moin-token-for-the-python-tests").is_none());
    }

    #[test]
    fn generated_tokens_verify_against_their_hash() {
        let token = generate();
        assert!(token.starts_with("wwt_") && token.len() == 47);
        let stored = format_hash(&hash(&token));
        let parsed = parse_hash(&stored).unwrap();
        assert!(verify(&token, &parsed));
        assert!(!verify(&generate(), &parsed));
        assert_ne!(generate(), generate());
        assert!(parse_hash("md5:00").is_err() && parse_hash("sha256:abc").is_err());
    }
}
