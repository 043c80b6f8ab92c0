//! The whole configuration file, composed of the parts that own its sections: the hub's
//! (`wikiwire_hub::Config`: store, publishers, channels, HTTP, cluster, ...), the IRC server's
//! `[irc]` (`wikiwire_irc::Config`), the relays' `[[relay]]` (`wikiwire_relay::Config`) and the
//! bot's `[xmpp]`, `[xmlrpc]`, `[wiki]` (`wikiwire_xmpp::Config`). Each part reads its own keys
//! from the one text (so every error keeps its line and column), refuses unknown keys inside its
//! sections, and checks itself; here a top-level key that no part knows is refused, and the
//! checks are run together, for `wikiwire config check` and every command that reads the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use wikiwire_hub::config::parse;

/// The file: one field per part. The sections that are one key each are read here; the parts
/// with several top-level keys are read whole (`skip`: see [`Config::parse`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    #[serde(skip)]
    pub hub: wikiwire_hub::Config,
    pub irc: wikiwire_irc::Config,
    #[serde(rename = "relay")]
    pub relays: Vec<wikiwire_relay::Config>,
    /// The Jabber bot's sections; without `[xmpp]`, no bot.
    #[serde(skip)]
    pub bot: wikiwire_xmpp::Config,
}

/// A configuration that cannot be used, with every reason found. What failed underneath is the
/// `source`, not in the message: wikiwire prints the chain (`cannot read <file>: <why>`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: wikiwire_hub::config::SyntaxError,
    },
    #[error("{path}: {}", problems.join("\n  "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

impl Config {
    /// Reads a file and checks it whole; every command reads its file through here.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config =
            Config::parse(&text).map_err(|source| ConfigError::Syntax { path: path.to_owned(), source })?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { path: path.to_owned(), problems })
        }
    }

    /// Parses TOML: a top-level key no part knows, unknown keys in a section and wrong types
    /// are errors with line and column.
    pub fn parse(text: &str) -> Result<Config, wikiwire_hub::config::SyntaxError> {
        parse::<TopLevel>(text)?;
        Ok(Config { hub: parse(text)?, bot: parse(text)?, ..parse(text)? })
    }

    /// Everything wrong with the meaning of the file, each as one readable sentence: each part
    /// checks its sections.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.hub.check(&mut problems);
        self.irc.check(&mut problems);
        wikiwire_relay::Config::check_all(&self.relays, &mut problems);
        self.bot.check(&mut problems);
        problems
    }

    /// What works but should not be left so (the hub's sections are the only ones with such).
    pub fn warnings(&self) -> Vec<String> {
        self.hub.warnings()
    }
}

/// Every top-level key some part reads, in the order of the parts.
fn top_level_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            field_names::<wikiwire_hub::Config>(),
            field_names::<Config>(),
            field_names::<wikiwire_xmpp::Config>(),
        ]
        .concat()
    })
}

/// The file's top level, read only to refuse a key no part knows, as `deny_unknown_fields`
/// would (the parts cannot: each sees the others' keys).
struct TopLevel;

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TopLevel, D::Error> {
        deserializer.deserialize_map(TopLevel)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = TopLevel;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        while map.next_key_seed(KnownKey)?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(TopLevel)
    }
}

/// A key checked while it is read, so that TOML's error points at it.
struct KnownKey;

impl<'de> DeserializeSeed<'de> for KnownKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let key = String::deserialize(deserializer)?;
        let known = top_level_keys();
        if known.contains(&key.as_str()) { Ok(()) } else { Err(de::Error::unknown_field(&key, known)) }
    }
}

/// The keys a derived `Deserialize` struct reads (serde hands them to `deserialize_struct`), so
/// that each part's keys are written once, in its struct.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The reader fails on purpose once it has the names.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only the field names were wanted"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_every_parts_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.hub.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.irc.listen.to_string(), "127.0.0.1:6667");
        assert!(config.relays.is_empty() && config.bot.xmpp.is_none());
        assert!(config.check().is_empty());
    }

    #[test]
    fn every_part_reads_its_sections_from_the_one_file() {
        let config = Config::parse(
            "data_dir = \"/srv/ww\"\n[irc]\nserver_name = \"irc.example.org\"\n\
             [[relay]]\nurl = \"irc://irc.example.org/#wiki\"\nnick = \"wikirelay\"\n\
             [xmpp]\njid = \"bot@example.org\"\npassword = \"pw\"\n",
        )
        .unwrap();
        assert_eq!(config.hub.data_dir, PathBuf::from("/srv/ww"));
        assert_eq!(config.irc.server_name, "irc.example.org");
        assert_eq!(config.relays[0].nick, "wikirelay");
        assert_eq!(config.bot.xmpp.as_ref().unwrap().jid, "bot@example.org");
        assert!(config.check().is_empty(), "{:?}", config.check());
    }

    #[test]
    fn a_key_no_part_knows_is_refused_where_it_is() {
        let error =
            Config::parse("[irc]\nenabled = true\n\n[ircc]\nenabled = true\n").unwrap_err().to_string();
        assert!(error.contains("line 4") && error.contains("unknown field `ircc`"), "{error}");
        assert!(
            error.contains("`publisher`") && error.contains("`relay`") && error.contains("`wiki`"),
            "{error}"
        );
        let error = Config::parse("datadir = \"x\"\n").unwrap_err().to_string();
        assert!(error.contains("line 1") && error.contains("datadir"), "{error}");
        for inside in [
            "[irc]\nlisen = 1\n",
            "[xmpp]\njid = \"a@b\"\npassword = \"p\"\nlisen = 1\n",
            "[http]\nlisen = 1\n",
        ] {
            let error = Config::parse(inside).unwrap_err().to_string();
            assert!(error.contains("unknown field `lisen`") && error.contains("line"), "{error}");
        }
    }

    #[test]
    fn every_part_checks_its_sections() {
        let config = Config::parse(
            "[http]\npublic_url = \"ftp://x\"\n[irc]\nserver_name = \"no dots\"\n\
             [[relay]]\nurl = \"http://nope\"\nnick = \"relay\"\n[xmlrpc]\nsecret = \"long enough\"\n",
        )
        .unwrap();
        let problems = config.check();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (problem, key) in
            problems.iter().zip(["http.public_url", "irc.server_name", "relay[0]", "xmlrpc"])
        {
            assert!(problem.starts_with(key), "{problems:?}");
        }
    }
}
