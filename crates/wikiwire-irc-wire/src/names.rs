//! What a nick, a channel name and the server's name may be. The hub's configuration checks publisher nicks and
//! channel names with these rules, the server enforces them on `NICK`, and ISUPPORT announces the
//! same lengths: what the server announces is what it enforces.

/// ISUPPORT `NICKLEN`.
pub const NICKLEN: usize = 32;
/// ISUPPORT `CHANNELLEN`: the whole name, `#` included.
pub const CHANNELLEN: usize = 64;

/// Nicks (RFC 2812 §2.3.1): a letter or one of `[]\`^{}_|` first, then those, digits and `-`.
pub fn check_nick(nick: &str) -> Result<(), &'static str> {
    let special = |b: u8| b"[]\\`^{}_|".contains(&b);
    let bytes = nick.as_bytes();
    match bytes.first() {
        None => Err("required"),
        Some(_) if bytes.len() > NICKLEN => Err("at most 32 characters (it is an IRC nick)"),
        Some(&first) if !(first.is_ascii_alphabetic() || special(first)) => {
            Err("must start with a letter or one of []\\`^{}_| (it is an IRC nick)")
        }
        Some(_) if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || special(b) || b == b'-') => {
            Err("use letters, digits, '-' and []\\`^{}_| (it is an IRC nick)")
        }
        Some(_) => Ok(()),
    }
}

/// Channel names: `#`, then at most 63 bytes without spaces, commas, colons or control characters.
pub fn check_channel_name(name: &str) -> Result<(), &'static str> {
    let Some(rest) = name.strip_prefix('#') else { return Err("must start with #") };
    if rest.is_empty() || name.len() > CHANNELLEN {
        return Err("1 to 63 characters after #");
    }
    if rest.chars().any(|c| c.is_control() || c.is_whitespace() || c == ',' || c == ':') {
        return Err("no spaces, commas, colons or control characters");
    }
    Ok(())
}

/// The server's own name: a host name with a dot (RFC 2812 §2.3.1: a nick has none, so a source
/// with a dot is the server), at most 63 bytes.
pub fn check_server_name(name: &str) -> Result<(), &'static str> {
    let well_formed = !name.is_empty()
        && name.len() <= 63
        && name.contains('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if well_formed { Ok(()) } else { Err("a host name with a dot, like irc.example.org") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_the_announced_lengths() {
        assert!(check_nick(&"n".repeat(NICKLEN)).is_ok());
        assert!(check_nick(&"n".repeat(NICKLEN + 1)).is_err());
        assert!(check_channel_name(&format!("#{}", "c".repeat(CHANNELLEN - 1))).is_ok());
        assert!(check_channel_name(&format!("#{}", "c".repeat(CHANNELLEN))).is_err());
        assert!(check_nick("9lives").is_err() && check_nick("[bot]-1").is_ok());
        assert!(check_channel_name("#a,b").is_err() && check_channel_name("nohash").is_err());
        assert!(check_server_name("irc.example.org").is_ok() && check_server_name("localhost").is_err());
    }
}
