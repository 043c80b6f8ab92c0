//! The channel directory: every wiki's `#<wiki>` and `#<wiki>.events`, plus the configured
//! channels — each a name, a format, a filter and the publishers who speak in it. The IRC server
//! runs these channels; the HTTP API describes them, so a subscriber that joined one can ask
//! history for exactly what the channel carries.

use wikiwire_event::{Filter, Format};

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

/// Builds the directory; `config check` has already validated names and filters.
pub fn directory(
    publishers: &Publishers,
    configured: &[ChannelConfig],
    wiki_format: Format,
    public_url: &str,
) -> Result<Vec<ChannelSpec>, String> {
    let mut channels = Vec::new();
    for wiki in publishers.wikis() {
        let name = &wiki.name;
        let filter = Filter::parse(&format!("wiki={name}")).map_err(|error| error.to_string())?;
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
        let filter =
            Filter::parse(&channel.filter).map_err(|error| format!("{}: filter: {error}", channel.name))?;
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
