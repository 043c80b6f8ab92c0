//! Publisher tokens: random secrets shown once, kept in configuration as a SHA-256 hash.
//!
//! A token carries 256 random bits, so a fast hash is enough: there is nothing to brute-force
//! that a slow hash would protect. Comparison is constant-time.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted in a configuration.
pub const MIN_LENGTH: usize = 16;
/// Plaintext tokens shorter than this get a warning: `wikiwire token` makes 68 characters.
pub const STRONG_LENGTH: usize = 32;
const PREFIX: &str = "wwt_";

/// A new token: `wwt_` and 43 characters of URL-safe base64.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's random source failing is not something to recover from.
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
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
