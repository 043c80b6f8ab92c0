//! SASL's `AUTHENTICATE` framing (IRCv3 sasl-3.1): a base64 payload travels in chunks of
//! [`CHUNK`] bytes; a chunk shorter than that ends it, and a payload whose length is a multiple of
//! [`CHUNK`] is ended by `AUTHENTICATE +`. The server reads chunks by this rule and the client
//! writes them by it, so both take the size from here.

/// Bytes of base64 in one `AUTHENTICATE` line.
pub const CHUNK: usize = 400;

/// The `AUTHENTICATE` parameters that carry `payload` (base64, so ASCII), in order.
pub fn chunks(payload: &str) -> Vec<&str> {
    let mut chunks: Vec<&str> = payload
        .as_bytes()
        .chunks(CHUNK)
        // Base64 is ASCII: every cut is at a character boundary.
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    if payload.len().is_multiple_of(CHUNK) {
        chunks.push("+");
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_ends_with_a_short_chunk_or_a_plus() {
        assert_eq!(chunks("abcd"), ["abcd"]);
        assert_eq!(chunks(""), ["+"]);
        let exact = "a".repeat(CHUNK);
        assert_eq!(chunks(&exact), [exact.as_str(), "+"]);
        let longer = "b".repeat(CHUNK + 1);
        assert_eq!(chunks(&longer), [&longer[..CHUNK], "b"]);
    }
}
