//! The `wikirpc2` dialect: the `wiki.` methods of the Wiki XML-RPC interface v2 (DokuWiki,
//! JSPWiki) as the configured account; DokuWiki's own full-text search.

use super::*;

impl Wiki {
    pub(super) async fn wikirpc2(&self, request: &Request) -> Result<Answer, WikiError> {
        let string = |text: &str| Value::String(text.to_owned());
        match request {
            Request::Page(page) => {
                Ok(Answer::Text(text(&self.call("wiki.getPage", vec![string(page)]).await?)?))
            }
            Request::PageHtml(page) => {
                Ok(Answer::Text(text(&self.call("wiki.getPageHTML", vec![string(page)]).await?)?))
            }
            Request::AllPages => {
                Ok(Answer::Pages(page_names(&self.call("wiki.getAllPages", vec![]).await?)?))
            }
            Request::PageInfo(page) => {
                Ok(Answer::Info(page_info(&self.call("wiki.getPageInfo", vec![string(page)]).await?)?))
            }
            Request::Search { query, title: false, .. } => {
                Ok(Answer::Hits(dokuwiki_hits(&self.call("dokuwiki.search", vec![string(query)]).await?)?))
            }
            Request::Search { query, title: true, case, regexp } => {
                let pages = page_names(&self.call("wiki.getAllPages", vec![]).await?)?;
                Ok(Answer::Hits(title_hits(pages, query, *case, *regexp)?))
            }
            Request::Revert { page, revision } => {
                // DokuWiki's revisions are Unix times; its parser knows `<int>` better than `<i8>`.
                let revision_value = i32::try_from(*revision).map_or(Value::Long(*revision), Value::Integer);
                let old = self.call("wiki.getPageVersion", vec![string(page), revision_value]).await?;
                let old = text(&old)?;
                if old.is_empty() {
                    return Err(WikiError::Fault(format!("{page} has no revision {revision}")));
                }
                let mut options = HashMap::new();
                options.insert("sum".to_owned(), string(&format!("reverted to revision {revision}")));
                options.insert("minor".to_owned(), Value::Boolean(false));
                let options =
                    options.try_to_value().map_err(|error| WikiError::Malformed(error.to_string()))?;
                let saved = self.call("wiki.putPage", vec![string(page), string(&old), options]).await?;
                Ok(Answer::Reverted(truthy(&saved)))
            }
        }
    }
}

/// DokuWiki's `dokuwiki.search`: structs with `id` and `snippet`.
fn dokuwiki_hits(value: &Value) -> Result<Vec<Hit>, WikiError> {
    list_of(value, "search results", |item| {
        let members = HashMap::<String, Value>::try_from_value(item).ok()?;
        let field = |name: &str| members.get(name).and_then(|value| String::try_from_value(value).ok());
        let context = strip_markup(&field("snippet").unwrap_or_default());
        Some(Hit { page: field("id")?, context, url: None })
    })
}

/// DokuWiki's search snippets are HTML (`<strong class="search_hit">`): the text of it.
pub(super) fn strip_markup(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for character in html.chars() {
        match character {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => text.push(character),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&amp;", "&")
}
