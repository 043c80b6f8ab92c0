//! The `moin2` dialect: MoinMoin 2, which has no XML-RPC, over its own HTTP views, read as an
//! anonymous visitor (what the wiki's ACLs let everyone read):
//!
//! | command | view |
//! |---|---|
//! | `getpage` | `+get/<item>` (the raw text) |
//! | `getpagehtml` | `+content/<item>` (the rendered content, without the theme) |
//! | `getpagelist` | `+index/` (the checkbox of each item carries its name) |
//! | `getpageinfo` | `+history/<item>` (the first row: revision, time, editor) |
//! | `search` | `+search?q=` (full text); a title search filters `+index/` |
//! | `revertpage` | not offered: a revert needs a logged-in session and a form, so it says so |
//!
//! The views are HTML made for people; what is read from them is kept to the few marks
//! MoinMoin 2.0's templates give (`moin-item`, `moin-search-match`, the history table).

use super::wikirpc2::strip_markup;
use super::*;

impl Wiki {
    pub(super) async fn moin2(&self, request: &Request) -> Result<Answer, WikiError> {
        match request {
            Request::Page(page) => {
                Ok(Answer::Text(self.view(&["+get"], page, None).await?.unwrap_or_default()))
            }
            Request::PageHtml(page) => {
                Ok(Answer::Text(self.view(&["+content"], page, None).await?.unwrap_or_default()))
            }
            Request::AllPages => Ok(Answer::Pages(self.moin2_pages().await?)),
            Request::PageInfo(page) => match self.view(&["+history"], page, None).await? {
                Some(html) => history_info(page, &html),
                None => Err(WikiError::Fault(format!("{page} does not exist"))),
            },
            Request::Search { query, title: false, .. } => {
                let html = self.view(&["+search"], "", Some(("q", query))).await?.unwrap_or_default();
                let base = if self.url.ends_with('/') { self.url.clone() } else { format!("{}/", self.url) };
                Ok(Answer::Hits(search_hits(&html, &base)))
            }
            Request::Search { query, title: true, case, regexp } => {
                Ok(Answer::Hits(title_hits(self.moin2_pages().await?, query, *case, *regexp)?))
            }
            Request::Revert { .. } => Err(WikiError::NotSupported),
        }
    }

    async fn moin2_pages(&self) -> Result<Vec<String>, WikiError> {
        let html = self.view(&["+index", ""], "", None).await?.unwrap_or_default();
        Ok(index_names(&html))
    }

    /// GETs `<url><view>/<item>[?name=value]`; `None` when the wiki answers 404.
    async fn view(
        &self,
        view: &[&str],
        item: &str,
        query: Option<(&str, &str)>,
    ) -> Result<Option<String>, WikiError> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|error| WikiError::Unreachable(format!("wiki.url: {error}")))?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| WikiError::Unreachable("wiki.url cannot take a path".into()))?;
            segments.pop_if_empty().extend(view);
            if !item.is_empty() {
                segments.extend(item.split('/'));
            }
        }
        if let Some((name, value)) = query {
            url.query_pairs_mut().append_pair(name, value);
        }
        self.metrics.xmpp_wiki_calls.inc();
        let result = self.get_text(url).await;
        if matches!(result, Err(WikiError::Unreachable(_) | WikiError::Malformed(_))) {
            self.metrics.xmpp_wiki_failures.inc();
        }
        result
    }

    async fn get_text(&self, url: reqwest::Url) -> Result<Option<String>, WikiError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| WikiError::Unreachable(error.without_url().to_string()))?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            reqwest::StatusCode::FORBIDDEN | reqwest::StatusCode::UNAUTHORIZED => {
                return Err(WikiError::Fault("the wiki does not let the bot read this".into()));
            }
            status if !status.is_success() => return Err(WikiError::Unreachable(format!("HTTP {status}"))),
            _ => {}
        }
        Ok(Some(String::from_utf8_lossy(&read_bounded(response).await?).into_owned()))
    }
}

/// The text between `start` (after it) and the next `end`, for each `start` in `html`.
fn between<'a>(html: &'a str, start: &'a str, end: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    html.split(start).skip(1).filter_map(move |rest| rest.split_once(end).map(|(inside, _)| inside))
}

/// `+index/`: `<input class="moin-item" type="checkbox" name="NAME" value="NAME"/>` per item.
fn index_names(html: &str) -> Vec<String> {
    between(html, r#"class="moin-item" type="checkbox" name=""#, "\"").map(strip_markup).collect()
}

/// `+search`: per `moin-search-match`, the name in `<b>` and the text of `moin-found-text`.
fn search_hits(html: &str, base: &str) -> Vec<Hit> {
    html.split(r#"<p class="moin-search-match">"#)
        .skip(1)
        .filter_map(|block| {
            let name = between(block, "<b>", "</b>").next().map(strip_markup)?.trim().to_owned();
            let context = between(block, r#"<p class="moin-found-text">"#, "</p>")
                .next()
                .map(strip_markup)
                .unwrap_or_default();
            let context = context.trim().trim_start_matches("CONTENT:").trim().to_owned();
            let url = Some(format!("{base}{}", name.replace(' ', "%20")));
            Some(Hit { page: name, context, url })
        })
        .collect()
}

/// `+history/<item>`: the first row of the table is the current revision: name, number, time,
/// size, the diff radios, the editor.
fn history_info(page: &str, html: &str) -> Result<Answer, WikiError> {
    let row = between(html, "<tbody>", "</tr>")
        .next()
        .ok_or_else(|| WikiError::Malformed("+history: no revision table".into()))?;
    let cells: Vec<String> = row
        .split("<td")
        .skip(1)
        .map(|cell| {
            let inside = cell.split_once('>').map_or("", |(_, rest)| rest);
            strip_markup(inside.split("</td>").next().unwrap_or_default())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let cell = |index: usize| cells.get(index).cloned().unwrap_or_default();
    Ok(Answer::Info(PageInfo { name: page.to_owned(), version: cell(1), modified: cell(2), author: cell(5) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_marks_of_moin2_views() {
        let index = r#"<input class="moin-item" type="checkbox" name="Front Page" value="Front Page"/>
            <a href="/Front%20Page">Front Page</a>
            <input class="moin-item" type="checkbox" name="A &amp; B" value="A &amp; B"/>"#;
        assert_eq!(index_names(index), vec!["Front Page", "A & B"]);
        let search = r#"<div class="moin-search-results"><p class="moin-search-match">
            <span class="moin-search-name"><a href="/Help?regex=press"><b>Help Page</b></a></span></p>
            <p class="moin-search-hit-info">REVISION: 5</p>
            <p class="moin-found-text">CONTENT: how to <b class="match term0">press</b> the button</p>"#;
        let hits = search_hits(search, "http://wiki/");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].page, "Help Page");
        assert_eq!(hits[0].context, "how to press the button");
        assert_eq!(hits[0].url.as_deref(), Some("http://wiki/Help%20Page"));
        let history = r#"<table><tbody><tr><td class="moin-wordbreak"><a href="/P">P</a></td>
            <td class="moin-integer">5</td><td>2026-12-06 15:30:39z</td><td class="moin-integer">13</td>
            <td><div><input type="radio" name="rev1" value="0f16"></div></td>
            <td class="moin-wordbreak"><a href="/users/Alice" title="Alice @ [127.0.0.1]">
            Alice </a></td><td>Moinmoin</td></tr></tbody></table>"#;
        let Ok(Answer::Info(info)) = history_info("P", history) else { panic!("no info") };
        assert_eq!(
            (info.version.as_str(), info.modified.as_str(), info.author.as_str()),
            ("5", "2026-12-06 15:30:39z", "Alice")
        );
    }
}
