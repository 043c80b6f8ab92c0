//! The wiki description block (SPEC §2.5, seed 1 "Data provided"): a wiki's name, engine, base
//! URL and link templates. Renderers compute links from it, so publishers need not ship them.

use serde::{Deserialize, Serialize};

use crate::fields::{TEXT_FIELDS, text_field};
use crate::{Event, Link};

/// The wiki software; it decides the default link templates and how page names go into URLs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// MoinMoin 1.x: `?action=` URLs.
    Moin,
    /// MoinMoin 2: `+diff/`, `+history/` and `+get/` views; revisions are revision ids.
    Moin2,
    Mediawiki,
    Dokuwiki,
    #[default]
    Generic,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Moin => "moin",
            Engine::Moin2 => "moin2",
            Engine::Mediawiki => "mediawiki",
            Engine::Dokuwiki => "dokuwiki",
            Engine::Generic => "generic",
        }
    }

    /// The engine's URL scheme. Placeholders: `{base}`, `{wiki}` and the event's one-line text
    /// fields (`{page}`, `{user}`, `{file}`, `{revision}`, `{old_revision}`, `{old_name}`); a
    /// template whose placeholder has no value gives no link.
    pub fn templates(self) -> LinkTemplates {
        let owned = |text: &str| Some(text.to_owned());
        match self {
            Engine::Moin => LinkTemplates {
                page: owned("{base}{page}"),
                diff: owned("{base}{page}?action=diff&rev1={old_revision}&rev2={revision}"),
                history: owned("{base}{page}?action=info"),
                user: owned("{base}{user}"),
                attachment: owned("{base}{page}?action=AttachFile&do=view&target={file}"),
            },
            // MoinMoin 2's views (moin/apps/frontend/views.py): the diff between two revision
            // ids, the item's history, and the raw bytes of exactly this revision.
            Engine::Moin2 => LinkTemplates {
                page: owned("{base}{page}"),
                diff: owned("{base}+diff/{page}?rev1={old_revision}&rev2={revision}"),
                history: owned("{base}+history/{page}"),
                user: owned("{base}users/{user}"),
                attachment: owned("{base}+get/+{revision}/{page}"),
            },
            Engine::Mediawiki => LinkTemplates {
                page: owned("{base}index.php?title={page}"),
                diff: owned("{base}index.php?diff={revision}&oldid={old_revision}"),
                history: owned("{base}index.php?title={page}&action=history"),
                user: owned("{base}index.php?title=User:{user}"),
                attachment: owned("{base}index.php?title=File:{file}"),
            },
            Engine::Dokuwiki => LinkTemplates {
                page: owned("{base}doku.php?id={page}"),
                diff: owned(
                    "{base}doku.php?id={page}&do=diff&rev2%5B0%5D={old_revision}&rev2%5B1%5D={revision}",
                ),
                history: owned("{base}doku.php?id={page}&do=revisions"),
                user: None,
                attachment: owned("{base}lib/exe/fetch.php?media={file}"),
            },
            Engine::Generic => LinkTemplates { page: owned("{base}{page}"), ..LinkTemplates::default() },
        }
    }

    /// How a page name becomes part of a URL: MediaWiki writes spaces as `_`, the others as `%20`;
    /// `/` (subpages) and `:` (namespaces) stay readable.
    fn encode_name(self, name: &str) -> String {
        let name = match self {
            Engine::Mediawiki => name.replace(' ', "_"),
            _ => name.to_owned(),
        };
        let mut out = String::with_capacity(name.len());
        for &byte in name.as_bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~/:".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
}

/// Link templates; `None` means the wiki has no such link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTemplates {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
}

impl LinkTemplates {
    /// These templates, with any template `overrides` sets taking its place.
    pub fn overridden_by(mut self, overrides: &LinkTemplates) -> LinkTemplates {
        for (slot, replacement) in [
            (&mut self.page, &overrides.page),
            (&mut self.diff, &overrides.diff),
            (&mut self.history, &overrides.history),
            (&mut self.user, &overrides.user),
            (&mut self.attachment, &overrides.attachment),
        ] {
            if replacement.is_some() {
                slot.clone_from(replacement);
            }
        }
        self
    }

    /// What is wrong with the templates, one line each: a `{` without its `}`, or a placeholder
    /// no event can fill (a typo would otherwise give no link, silently).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let templates = [
            ("page", &self.page),
            ("diff", &self.diff),
            ("history", &self.history),
            ("user", &self.user),
            ("attachment", &self.attachment),
        ];
        for (kind, template) in templates {
            let Some(mut rest) = template.as_deref() else { continue };
            while let Some(start) = rest.find('{') {
                let Some(length) = rest[start..].find('}') else {
                    problems.push(format!("links.{kind}: a {{ without its }}"));
                    break;
                };
                let name = &rest[start + 1..start + length];
                if !placeholders().any(|known| known == name) {
                    let known: Vec<String> = placeholders().map(|known| format!("{{{known}}}")).collect();
                    problems.push(format!(
                        "links.{kind}: unknown placeholder {{{name}}} (known: {})",
                        known.join(", ")
                    ));
                }
                rest = &rest[start + length + 1..];
            }
        }
        problems
    }
}

/// What a link template may name: the base URL, the wiki, and the event's one-line text fields.
fn placeholders() -> impl Iterator<Item = &'static str> {
    ["base", "wiki"]
        .into_iter()
        .chain(TEXT_FIELDS.iter().filter(|field| !field.multiline).map(|field| field.name))
}

/// Everything a client needs to know about one wiki.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WikiDescription {
    pub name: String,
    pub publisher: String,
    pub engine: Engine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default)]
    pub links: LinkTemplates,
}

impl WikiDescription {
    /// A description with the engine's templates; `base_url` may hold `{wiki}` for wiki farms.
    pub fn new(
        name: &str,
        publisher: &str,
        engine: Engine,
        base_url: Option<&str>,
        overrides: &LinkTemplates,
    ) -> Self {
        WikiDescription {
            name: name.to_owned(),
            publisher: publisher.to_owned(),
            engine,
            base_url: base_url.map(|base| base.replace("{wiki}", name)),
            links: engine.templates().overridden_by(overrides),
        }
    }

    /// Fills one template from an event; `None` when a placeholder has no value.
    fn expand(&self, template: &str, event: &Event) -> Option<String> {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = start + rest[start..].find('}')?;
            let value = match &rest[start + 1..end] {
                "base" => self.base_url.clone()?,
                "wiki" => self.engine.encode_name(&event.wiki),
                name => match text_field(name) {
                    Some(field) if !field.multiline => self.engine.encode_name((field.get)(event)?),
                    _ => return None,
                },
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// The links the templates give for this event, most specific first.
    pub fn links_for(&self, event: &Event) -> Vec<Link> {
        let candidates = [
            (&self.links.diff, "diff"),
            (&self.links.attachment, "attachment"),
            (&self.links.page, "page"),
            (&self.links.history, "history"),
            (&self.links.user, "user"),
        ];
        candidates
            .into_iter()
            .filter(|(_, kind)| relevant(kind, event))
            .filter_map(|(template, kind)| {
                let url = self.expand(template.as_deref()?, event)?;
                Some(Link { url, description: kind.to_owned() })
            })
            .collect()
    }
}

/// Which links make sense for an action: a diff only for edits, an attachment link only for files.
fn relevant(kind: &str, event: &Event) -> bool {
    let action = event.action.as_str();
    match kind {
        "diff" => matches!(action, "page_changed" | "page_reverted"),
        "attachment" => action == "file_attached",
        "user" => action == "user_created",
        _ => true,
    }
}

/// The one link a one-line rendering shows: the publisher's first link, else the most specific
/// template link.
pub fn primary_url(event: &Event, wiki: Option<&WikiDescription>) -> Option<String> {
    if let Some(link) = event.urls.first() {
        return Some(link.url.clone());
    }
    wiki?.links_for(event).into_iter().next().map(|link| link.url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Timestamp};

    fn edit(page: &str) -> Event {
        let mut event = Event::new("MoinMaster", Action::parse("page_changed").unwrap(), Timestamp::MIN);
        event.page = Some(page.into());
        event.user = Some("Alice".into());
        event.revision = Some("42".into());
        event.old_revision = Some("41".into());
        event
    }

    #[test]
    fn moin_diff_links_follow_the_spec_example() {
        let wiki = WikiDescription::new(
            "MoinMaster",
            "moin",
            Engine::Moin,
            Some("https://master.example/"),
            &LinkTemplates::default(),
        );
        let links = wiki.links_for(&edit("Help On/Editing"));
        assert_eq!(links[0].url, "https://master.example/Help%20On/Editing?action=diff&rev1=41&rev2=42");
        assert_eq!(links[1].url, "https://master.example/Help%20On/Editing");
    }

    #[test]
    fn moin2_links_use_its_views_and_revision_ids() {
        let wiki = WikiDescription::new(
            "Moin2",
            "moin2",
            Engine::Moin2,
            Some("http://wiki.example/"),
            &LinkTemplates::default(),
        );
        let mut event = edit("Help On/Editing");
        event.revision = Some("9b1c".into());
        event.old_revision = Some("77aa".into());
        let links = wiki.links_for(&event);
        assert_eq!(links[0].url, "http://wiki.example/+diff/Help%20On/Editing?rev1=77aa&rev2=9b1c");
        assert_eq!(links[2].url, "http://wiki.example/+history/Help%20On/Editing");
        event.action = Action::parse("file_attached").unwrap();
        event.page = Some("Help On/logo.png".into());
        event.file = Some("logo.png".into());
        assert_eq!(wiki.links_for(&event)[0].url, "http://wiki.example/+get/+9b1c/Help%20On/logo.png");
    }

    #[test]
    fn mediawiki_uses_underscores_and_farms_use_the_wiki_name() {
        let wiki = WikiDescription::new(
            "enwiki",
            "wmf",
            Engine::Mediawiki,
            Some("https://{wiki}.example/w/"),
            &LinkTemplates::default(),
        );
        let page = wiki
            .links_for(&edit("Main Page & more"))
            .into_iter()
            .find(|link| link.description == "page")
            .unwrap();
        assert_eq!(page.url, "https://enwiki.example/w/index.php?title=Main_Page_%26_more");
    }

    #[test]
    fn missing_values_drop_the_link_and_overrides_win() {
        let overrides = LinkTemplates { page: Some("{base}wiki/{page}".into()), ..LinkTemplates::default() };
        let wiki = WikiDescription::new("W", "p", Engine::Moin, Some("https://w/"), &overrides);
        let mut event = edit("P");
        event.old_revision = None;
        let links = wiki.links_for(&event);
        assert_eq!(links[0].url, "https://w/wiki/P");
        assert_eq!(primary_url(&event, Some(&wiki)).as_deref(), Some("https://w/wiki/P"));
        let no_base = WikiDescription::new("W", "p", Engine::Moin, None, &LinkTemplates::default());
        assert!(no_base.links_for(&event).is_empty());
    }

    #[test]
    fn every_engine_template_names_only_known_placeholders_and_typos_are_told() {
        for engine in [Engine::Moin, Engine::Moin2, Engine::Mediawiki, Engine::Dokuwiki, Engine::Generic] {
            assert_eq!(engine.templates().problems(), Vec::<String>::new(), "{}", engine.name());
        }
        let typo = LinkTemplates {
            diff: Some("{base}{page}?rev={revison}".into()),
            user: Some("{base}{user".into()),
            page: Some("{base}{old_name}".into()),
            ..LinkTemplates::default()
        };
        let problems = typo.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("links.diff: unknown placeholder {revison} (known: {base}, {wiki}, {page}")
        );
        assert_eq!(problems[1], "links.user: a { without its }");
    }
}
