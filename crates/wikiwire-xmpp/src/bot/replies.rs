//! Commands and their replies: the workers that take messages from the queue, parse them
//! (`commands`), ask the wiki (`wiki`) or the bot's state, and answer in the user's language;
//! search-form submissions; hub subscriptions and who gets an event.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::data_forms::{DataForm, DataFormType};
use tokio_xmpp::parsers::message::Message;
use wikiwire_event::{Event, Filter};

use super::{Bot, CommandQueue, lock};
use crate::commands::{self, Command, ParseError};
use crate::i18n;
use crate::render;
use crate::state::Subscription;

/// Hub subscriptions one Jabber user may hold, and all users together.
const MAX_SUBSCRIPTIONS_PER_USER: usize = 50;
const MAX_SUBSCRIPTIONS: usize = 10_000;
use crate::wiki::{Answer, Request, WikiError};

/// Longest reply text, in bytes.
const MAX_REPLY: usize = 32 * 1024;

impl Bot {
    /// A worker that runs commands from the queue.
    pub async fn run_commands(self: Arc<Self>, queue: Arc<tokio::sync::Mutex<CommandQueue>>) {
        let shutdown = self.stop.clone();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = async { queue.lock().await.recv().await } => next,
            };
            let Some((from, message)) = next else { return };
            let lang = self.language(&from.to_bare()).await;
            let reply = self.answer(&from, &message, lang).await;
            // Another node may run the bot by now (a command can take a while): it answers.
            if !self.lease.valid() {
                return;
            }
            self.xmpp.post(reply).await;
        }
    }

    async fn answer(&self, from: &Jid, message: &Message, lang: &'static str) -> Message {
        if let Some(form) = message
            .payloads
            .iter()
            .find(|payload| payload.is("x", render::NS_DATA_FORMS))
            .and_then(|payload| DataForm::try_from(payload.clone()).ok())
            && form.type_ == DataFormType::Submit
            && form.form_type() == Some(render::SEARCH_FORM)
        {
            let value = |var: &str| {
                form.fields
                    .iter()
                    .find(|field| field.var.as_deref() == Some(var))
                    .and_then(|field| field.values.first().cloned())
                    .unwrap_or_default()
            };
            let flag = |var: &str| matches!(value(var).as_str(), "1" | "true");
            let query = value("query");
            if query.trim().is_empty() {
                return render::chat(
                    from.clone(),
                    &i18n::fill(lang, "usage", &[("usage", i18n::text(lang, "help.search"))]),
                );
            }
            let request = Request::Search {
                query,
                title: value("type") == "title",
                case: flag("case"),
                regexp: flag("regexp"),
            };
            return render::chat(from.clone(), &self.wiki_reply(from, &request, lang).await);
        }
        let body = message.get_best_body(vec![lang]).map(|(_, body)| body.clone()).unwrap_or_default();
        let text = match commands::parse(&body) {
            Ok(Command::Help(topic)) => self.help(topic.as_deref(), lang),
            Ok(Command::Ping) => i18n::text(lang, "pong").to_owned(),
            Ok(Command::SearchForm) => return render::search_form(from.clone(), lang),
            Ok(Command::Wiki(request)) => self.wiki_reply(from, &request, lang).await,
            Ok(Command::Subscribe { wiki, pages }) => {
                self.subscribe(&from.to_bare(), &wiki, pages, lang).await
            }
            Ok(Command::Unsubscribe { wiki, pages }) => {
                match self.state.unsubscribe(from.to_bare().as_str(), wiki.as_deref(), pages.as_deref()).await
                {
                    Ok(count) => {
                        self.load_subscriptions().await;
                        i18n::fill(lang, "unsubscribed", &[("count", &count.to_string())])
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot remove a subscription");
                        i18n::text(lang, "state_error").to_owned()
                    }
                }
            }
            Ok(Command::Subscriptions) => match self.state.subscriptions(Some(from.to_bare().as_str())).await
            {
                Ok(list) if list.is_empty() => i18n::text(lang, "no_subscriptions").to_owned(),
                Ok(list) => {
                    let mut text = i18n::text(lang, "subscriptions").to_owned();
                    for subscription in list {
                        text.push_str("\n• ");
                        text.push_str(&subscription.wiki);
                        if !subscription.pages.is_empty() {
                            text.push(' ');
                            text.push_str(&subscription.pages);
                        }
                    }
                    text
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read subscriptions");
                    i18n::text(lang, "state_error").to_owned()
                }
            },
            Err(ParseError::Unknown(command)) => {
                i18n::fill(lang, "unknown_command", &[("command", &command)])
            }
            Err(ParseError::Usage(command)) => {
                i18n::fill(lang, "usage", &[("usage", i18n::text(lang, &format!("help.{command}")))])
            }
        };
        render::chat(from.clone(), &text)
    }

    fn help(&self, topic: Option<&str>, lang: &str) -> String {
        if let Some(topic) = topic
            && commands::COMMANDS.contains(&topic)
        {
            return i18n::text(lang, &format!("help.{topic}")).to_owned();
        }
        let name = self.wiki.as_ref().map_or(self.hub.public_url(), |wiki| wiki.url());
        let mut text = i18n::fill(lang, "help.intro", &[("wiki", name)]);
        for command in commands::COMMANDS {
            text.push_str("\n• ");
            text.push_str(i18n::text(lang, &format!("help.{command}")));
        }
        text
    }

    async fn wiki_reply(&self, from: &Jid, request: &Request, lang: &str) -> String {
        let Some(wiki) = &self.wiki else {
            return i18n::text(lang, "no_wiki").to_owned();
        };
        let command = match request {
            Request::Page(_) => "getpage",
            Request::PageHtml(_) => "getpagehtml",
            Request::AllPages => "getpagelist",
            Request::PageInfo(_) => "getpageinfo",
            Request::Search { .. } => "search",
            Request::Revert { .. } => "revertpage",
        };
        let answer = match wiki.request(from.to_bare().as_str(), request).await {
            Ok(answer) => answer,
            Err(WikiError::Fault(fault)) => return i18n::fill(lang, "wiki_error", &[("error", &fault)]),
            Err(WikiError::NotSupported) => {
                return i18n::fill(lang, "not_supported", &[("command", command)]);
            }
            Err(error) => return i18n::fill(lang, "wiki_unreachable", &[("error", &error.to_string())]),
        };
        let text = match (answer, request) {
            // DokuWiki answers a page that does not exist with an empty text.
            (Answer::Text(text), Request::Page(page) | Request::PageHtml(page)) if text.trim().is_empty() => {
                i18n::fill(lang, "empty_page", &[("page", page)])
            }
            (Answer::Text(text), _) => text,
            (Answer::Pages(pages), _) => {
                let mut text = i18n::fill(lang, "page_list", &[("count", &pages.len().to_string())]);
                for page in pages {
                    text.push('\n');
                    text.push_str(&page);
                }
                text
            }
            (Answer::Info(info), _) => i18n::fill(
                lang,
                "page_info",
                &[
                    ("page", &info.name),
                    ("version", &info.version),
                    ("author", &info.author),
                    ("date", &info.modified),
                ],
            ),
            (Answer::Hits(hits), Request::Search { query, .. }) if hits.is_empty() => {
                i18n::fill(lang, "search_nothing", &[("query", query)])
            }
            (Answer::Hits(hits), Request::Search { query, .. }) => {
                let mut text = i18n::fill(
                    lang,
                    "search_results",
                    &[("count", &hits.len().to_string()), ("query", query)],
                );
                for hit in hits {
                    text.push_str("\n• ");
                    text.push_str(&hit.page);
                    let context = hit.context.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !context.is_empty() {
                        text.push_str(" — ");
                        text.push_str(&context);
                    }
                    if let Some(url) = hit.url {
                        text.push_str(" <");
                        text.push_str(&url);
                        text.push('>');
                    }
                }
                text
            }
            (Answer::Hits(_), _) => String::new(),
            (Answer::Reverted(done), Request::Revert { page, revision }) => {
                let key = if done { "reverted" } else { "revert_failed" };
                i18n::fill(lang, key, &[("page", page), ("revision", &revision.to_string())])
            }
            (Answer::Reverted(_), _) => String::new(),
        };
        cut(text, lang)
    }

    async fn subscribe(&self, jid: &BareJid, wiki: &str, pages: Option<String>, lang: &str) -> String {
        let publishers = self.hub.publishers();
        let Some(description) = publishers.wikis().iter().find(|known| known.name.eq_ignore_ascii_case(wiki))
        else {
            let names: Vec<&str> = publishers.wikis().iter().map(|known| known.name.as_str()).collect();
            return i18n::fill(lang, "no_such_wiki", &[("wiki", wiki), ("wikis", &names.join(", "))]);
        };
        let pattern = pages.unwrap_or_default();
        if !pattern.is_empty()
            && let Err(error) = Filter::from_pairs([("page", pattern.as_str())])
        {
            return i18n::fill(lang, "bad_pattern", &[("pattern", &pattern), ("error", &error.to_string())]);
        }
        // Every subscription is a compiled filter matched against every event: bounded per user
        // and in total, so no one user can make every event (and every restart) expensive.
        let (mine, total) = {
            let compiled = lock(&self.subscriptions);
            (compiled.iter().filter(|(owner, _, _)| owner == jid.as_str()).count(), compiled.len())
        };
        if mine >= MAX_SUBSCRIPTIONS_PER_USER || total >= MAX_SUBSCRIPTIONS {
            let limit = if mine >= MAX_SUBSCRIPTIONS_PER_USER {
                MAX_SUBSCRIPTIONS_PER_USER
            } else {
                MAX_SUBSCRIPTIONS
            };
            return i18n::fill(lang, "too_many_subscriptions", &[("limit", &limit.to_string())]);
        }
        let shown = if pattern.is_empty() { String::new() } else { format!(" ({pattern})") };
        let subscription =
            Subscription { jid: jid.to_string(), wiki: description.name.clone(), pages: pattern };
        match self.state.subscribe(subscription).await {
            Ok(added) => {
                self.load_subscriptions().await;
                let key = if added { "subscribed" } else { "already_subscribed" };
                i18n::fill(lang, key, &[("wiki", &description.name), ("pages", &shown)])
            }
            Err(error) => {
                tracing::error!(%error, "cannot store a subscription");
                i18n::text(lang, "state_error").to_owned()
            }
        }
    }

    /// Reads every subscription into memory, each as a filter. A filter already compiled for the
    /// same wiki and pattern is reused: a pattern is compiled once, not at every change.
    pub(crate) async fn load_subscriptions(&self) {
        match self.state.subscriptions(None).await {
            Ok(list) => {
                let known: HashMap<(String, String), Filter> = lock(&self.subscriptions)
                    .iter()
                    .map(|(_, key, filter)| (key.clone(), filter.clone()))
                    .collect();
                let compiled = list
                    .into_iter()
                    .filter_map(|subscription| {
                        let key = (subscription.wiki.clone(), subscription.pages.clone());
                        let filter = match known.get(&key) {
                            Some(filter) => filter.clone(),
                            None => {
                                let mut pairs = vec![("wiki", subscription.wiki.as_str())];
                                if !subscription.pages.is_empty() {
                                    pairs.push(("page", subscription.pages.as_str()));
                                }
                                Filter::from_pairs(pairs).ok()?
                            }
                        };
                        Some((subscription.jid, key, filter))
                    })
                    .collect();
                *lock(&self.subscriptions) = compiled;
            }
            Err(error) => tracing::error!(%error, "cannot read subscriptions"),
        }
    }

    /// Who is to be told of `event`, each JID once.
    pub(crate) fn subscribers(&self, event: &Event) -> Vec<String> {
        let mut jids: Vec<String> = lock(&self.subscriptions)
            .iter()
            .filter(|(_, _, filter)| filter.matches(event))
            .map(|(jid, _, _)| jid.clone())
            .collect();
        jids.sort_unstable();
        jids.dedup();
        jids
    }
}

fn cut(text: String, lang: &str) -> String {
    if text.len() <= MAX_REPLY {
        return text;
    }
    let kept = wikiwire_event::text::cut_at_boundary(&text, MAX_REPLY);
    let more = text.len() - kept.len();
    format!("{kept}\n{}", i18n::fill(lang, "truncated", &[("bytes", &more.to_string())]))
}
