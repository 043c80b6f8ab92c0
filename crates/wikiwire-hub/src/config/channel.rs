//! `[[channel]]`: channels of one's own beside each wiki's (SPEC §3), e.g. one `#antispam`
//! shared by several wikis. The hub's, not the IRC server's: the HTTP API lists them too. Their
//! names follow IRC's rules (`wikiwire-irc-wire`).

use serde::Deserialize;
use wikiwire_event::{Filter, Format};
use wikiwire_irc_wire::names::check_channel_name;

/// A channel from the configuration: a name, a format and a filter (SPEC §3).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    #[serde(default)]
    pub format: Format,
    /// The filter in its query-string form, e.g. `wiki=A,B&action=antispam_updated`.
    #[serde(default)]
    pub filter: String,
    pub topic: Option<String>,
}

impl ChannelConfig {
    /// `wikis`: every configured wiki (each has `#<wiki>` and `#<wiki>.events`).
    pub(super) fn check_all(
        channels: &[ChannelConfig],
        wikis: &[(String, String)],
        problems: &mut Vec<String>,
    ) {
        let mut names: Vec<String> =
            wikis.iter().flat_map(|(wiki, _)| [format!("#{wiki}"), format!("#{wiki}.events")]).collect();
        for (index, channel) in channels.iter().enumerate() {
            let at = format!("channel[{index}] ({:?})", channel.name);
            if let Err(reason) = check_channel_name(&channel.name) {
                problems.push(format!("{at}: name: {reason}"));
            }
            if names.iter().any(|name| name.eq_ignore_ascii_case(&channel.name)) {
                problems.push(format!(
                    "{at}: name: already a channel (every wiki has #<wiki> and #<wiki>.events)"
                ));
            }
            names.push(channel.name.clone());
            if let Err(error) = Filter::parse(&channel.filter) {
                problems.push(format!("{at}: filter: {error}"));
            }
        }
    }
}
