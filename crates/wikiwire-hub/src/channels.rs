//! The channel directory: every wiki's `#<wiki>` and `#<wiki>.events`, plus the configured
//! channels — each a name, a format, a filter and the publishers who speak in it. The IRC server
//! runs these channels; the HTTP API describes them, so a subscriber that joined one can ask
//! history for exactly what the channel carries.

use wikiwire_event::{FieldError, Filter, Format};

use crate::config::ChannelConfig;
use crate::publisher::Publishers;

#[derive(Clone, Debug)]
pub struct ChannelSpec {
    pub name: String,
    pub format: Format,
    pub filter: Filter,
    pub topic: String,
    /// Publishers whose events this channel may carry: its only speakers.
    pub speakers: Vec<String>,
    /// Readable lines start with the wiki name: the channel carries several wikis.
    pub show_wiki: bool,
}

impl ChannelSpec {
    fn new(
        name: String,
        format: Format,
        filter: Filter,
        topic: String,
        publishers: &Publishers,
    ) -> ChannelSpec {
        let speakers = publishers
            .all()
            .iter()
            .filter(|publisher| publisher.wikis.iter().any(|wiki| filter.allows_wiki(wiki)))
            .map(|publisher| publisher.name.clone())
            .collect();
        let show_wiki = filter.single_wiki().is_none();
        ChannelSpec { name, format, filter, topic, speakers, show_wiki }
    }
}

/// A channel the configuration describes but no filter can carry (`config check` refuses these
/// first). A configured channel's keeps the filter's error as its source: `<channel>: filter:
/// <why>` when shown with its chain.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A wiki's name that makes no `wiki=` filter.
    #[error(transparent)]
    Wiki(FieldError),
    #[error("{channel}: filter")]
    Filter {
        channel: String,
        #[source]
        source: FieldError,
    },
}

/// Builds the directory; `config check` has already validated names and filters.
pub fn directory(
    publishers: &Publishers,
    configured: &[ChannelConfig],
    wiki_format: Format,
    public_url: &str,
) -> Result<Vec<ChannelSpec>, DirectoryError> {
    let mut channels = Vec::new();
    for wiki in publishers.wikis() {
        let name = &wiki.name;
        let filter = Filter::parse(&format!("wiki={name}")).map_err(DirectoryError::Wiki)?;
        let description = wikiwire_event::api::wiki(public_url, name);
        channels.push(ChannelSpec::new(
            format!("#{name}"),
            wiki_format,
            filter.clone(),
            format!("Recent changes of {name} | description: {description}"),
            publishers,
        ));
        channels.push(ChannelSpec::new(
            format!("#{name}.events"),
            Format::Packed,
            filter,
            format!("Events of {name}, packed (form-urlencoded, id first) | description: {description}"),
            publishers,
        ));
    }
    for channel in configured {
        let filter = Filter::parse(&channel.filter)
            .map_err(|source| DirectoryError::Filter { channel: channel.name.clone(), source })?;
        let topic = channel.topic.clone().unwrap_or_else(|| {
            let what =
                if filter.is_all() { "all events".to_owned() } else { format!("events where {filter}") };
            format!("{what} ({})", channel.format.name())
        });
        let topic = format!("{topic} | channel: {}", wikiwire_event::api::channel(public_url, &channel.name));
        channels.push(ChannelSpec::new(channel.name.clone(), channel.format, filter, topic, publishers));
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// A configured channel's bad filter keeps the filter's error as its source, and the chain
    /// reads as the message always did: `#x: filter: <why>`.
    #[test]
    fn a_bad_filter_keeps_its_error() {
        let channel = ChannelConfig {
            name: "#x".into(),
            format: Format::Text,
            filter: "colour=blue".into(),
            topic: None,
        };
        let error = directory(&Publishers::default(), &[channel], Format::Text, "https://hub.example")
            .expect_err("an unknown filter field");
        let source = error.source().expect("the filter's error");
        assert!(source.is::<FieldError>());
        assert_eq!(error.to_string(), "#x: filter");
    }
}
