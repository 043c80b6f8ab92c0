//! The `moin` dialect: MoinMoin's `?action=xmlrpc2`, each call made as the Jabber user through
//! `getJabberAuthToken` and `applyAuthToken` in a multicall; the user's language by JID.

use super::*;

impl Wiki {
    pub(super) async fn moin(&self, jid: &str, request: &Request) -> Result<Answer, WikiError> {
        let string = |text: &str| Value::String(text.to_owned());
        let (method, params) = match request {
            Request::Page(page) => ("getPage", vec![string(page)]),
            Request::PageHtml(page) => ("getPageHTML", vec![string(page)]),
            Request::AllPages => ("getAllPages", vec![]),
            Request::PageInfo(page) => ("getPageInfo", vec![string(page)]),
            Request::Search { query, title, case, regexp } => (
                "searchPagesEx",
                vec![
                    string(query),
                    string(if *title { "title" } else { "text" }),
                    Value::Integer(CONTEXT),
                    Value::Boolean(*case),
                    Value::Integer(0),
                    Value::Boolean(*regexp),
                ],
            ),
            Request::Revert { page, revision } => {
                let revision = i32::try_from(*revision)
                    .map_err(|_| WikiError::Fault(format!("no revision {revision}")))?;
                ("revertPage", vec![string(page), Value::Integer(revision)])
            }
        };
        let value = self.call_as(jid, method, params).await?;
        match request {
            Request::Page(_) | Request::PageHtml(_) => Ok(Answer::Text(text(&value)?)),
            Request::AllPages => Ok(Answer::Pages(page_names(&value)?)),
            Request::PageInfo(_) => Ok(Answer::Info(page_info(&value)?)),
            Request::Search { .. } => Ok(Answer::Hits(moin_hits(&value)?)),
            Request::Revert { .. } => Ok(Answer::Reverted(truthy(&value))),
        }
    }

    /// The user's language as the wiki knows it (`moin` only), remembered for a while.
    pub async fn language(&self, jid: &str) -> Option<String> {
        if self.dialect != WikiDialect::Moin {
            return None;
        }
        if let Some((language, at)) = lock(&self.languages).get(jid).cloned() {
            let ttl = if language.is_some() { LANGUAGE_TTL } else { LANGUAGE_RETRY };
            if at.elapsed() < ttl {
                return language;
            }
        }
        let language = match self.call("getUserLanguageByJID", vec![Value::String(jid.to_owned())]).await {
            Ok(Value::String(code)) if !code.trim().is_empty() => Some(code.trim().to_owned()),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, "no language from the wiki");
                None
            }
        };
        let mut languages = lock(&self.languages);
        if languages.len() > 10_000 {
            languages.clear();
        }
        languages.insert(jid.to_owned(), (language.clone(), Instant::now()));
        language
    }

    /// `method` in a multicall after `applyAuthToken`, with a token for `jid` (MoinMoin).
    async fn call_as(&self, jid: &str, method: &str, params: Vec<Value>) -> Result<Value, WikiError> {
        for attempt in 0..2 {
            let cached = lock(&self.tokens).get(jid).cloned();
            let token = match cached {
                Some(token) => token,
                None => {
                    let secret = self.secret.clone().unwrap_or_default();
                    let answer = self
                        .call(
                            "getJabberAuthToken",
                            vec![Value::String(jid.to_owned()), Value::String(secret)],
                        )
                        .await?;
                    let token = String::try_from_value(&answer).unwrap_or_default();
                    if token.is_empty() {
                        // No wiki account with this JID: anonymous, as MoinMoin's bot does.
                        return self.call(method, params).await;
                    }
                    token
                }
            };
            let calls = vec![
                multicall_entry("applyAuthToken", vec![Value::String(token.clone())])?,
                multicall_entry(method, params.clone())?,
            ];
            let calls = calls.try_to_value().map_err(|error| WikiError::Malformed(error.to_string()))?;
            let answer = self.call("system.multicall", vec![calls]).await?;
            let mut results = multicall_results(&answer)?;
            if results.len() != 2 {
                return Err(WikiError::Malformed(format!(
                    "system.multicall gave {} answers for 2 calls",
                    results.len()
                )));
            }
            let result = results.pop().expect("two results");
            if let Err(refusal) = results.pop().expect("two results") {
                lock(&self.tokens).remove(jid);
                if attempt == 0 {
                    tracing::debug!("the wiki refused a kept auth token; asking for a new one");
                    continue;
                }
                return Err(refusal);
            }
            let mut tokens = lock(&self.tokens);
            if tokens.len() > 10_000 {
                tokens.clear();
            }
            tokens.insert(jid.to_owned(), token);
            return result;
        }
        unreachable!("the loop returns on its second pass")
    }
}

/// MoinMoin's `searchPagesEx`: a list of `[name, context, url]`.
fn moin_hits(value: &Value) -> Result<Vec<Hit>, WikiError> {
    list_of(value, "search results", |item| {
        let fields = Vec::<Value>::try_from_value(item).ok()?;
        let field = |index: usize| fields.get(index).and_then(|value| String::try_from_value(value).ok());
        Some(Hit { page: field(0)?, context: field(1).unwrap_or_default(), url: field(2) })
    })
}
