//! The bot's texts in every language it speaks, as one table: a key and its English and German
//! text. `{name}` placeholders are filled by `fill`. A user's language comes from the wiki
//! (`getUserLanguageByJID`), else from the `xml:lang` of their message, else the configured
//! default; an unknown language falls back to English.

/// Languages, in table column order.
pub const LANGUAGES: &[&str] = &["en", "de"];

const TEXTS: &[(&str, [&str; 2])] = &[
    // Subjects of notifications made from hub events, per action.
    ("subject.page_changed", ["Page changed: {page}", "Seite geändert: {page}"]),
    ("subject.page_created", ["New page: {page}", "Neue Seite: {page}"]),
    ("subject.page_deleted", ["Page deleted: {page}", "Seite gelöscht: {page}"]),
    ("subject.page_renamed", ["Page renamed: {page}", "Seite umbenannt: {page}"]),
    ("subject.page_reverted", ["Page reverted: {page}", "Seite zurückgesetzt: {page}"]),
    ("subject.file_attached", ["File attached to {page}", "Datei angehängt an {page}"]),
    ("subject.file_removed", ["File removed from {page}", "Datei entfernt von {page}"]),
    ("subject.user_created", ["New user: {user}", "Neuer Benutzer: {user}"]),
    ("subject.other", ["{wiki}: {action}", "{wiki}: {action}"]),
    // Field labels of notification forms.
    ("field.page", ["Page", "Seite"]),
    ("field.editor", ["Editor", "Bearbeiter"]),
    ("field.comment", ["Comment", "Kommentar"]),
    ("field.diff", ["Changes", "Änderungen"]),
    ("field.revision", ["Revision", "Revision"]),
    ("field.old_name", ["Old name", "Alter Name"]),
    ("field.file", ["File", "Datei"]),
    ("field.size", ["Size", "Größe"]),
    ("links", ["Links:", "Links:"]),
    // Commands.
    (
        "help.intro",
        [
            "I am the notification bot of {wiki}. Commands (page names with spaces in quotes):",
            "Ich bin der Benachrichtigungs-Bot von {wiki}. Befehle (Seitennamen mit Leerzeichen in Anführungszeichen):",
        ],
    ),
    ("help.help", ["help [command] — this text", "help [Befehl] — dieser Text"]),
    ("help.ping", ["ping — am I there?", "ping — bin ich da?"]),
    ("help.getpage", ["getpage <page> — the page's text", "getpage <Seite> — der Text der Seite"]),
    (
        "help.getpagehtml",
        ["getpagehtml <page> — the page as HTML", "getpagehtml <Seite> — die Seite als HTML"],
    ),
    ("help.getpagelist", ["getpagelist — all pages", "getpagelist — alle Seiten"]),
    (
        "help.getpageinfo",
        ["getpageinfo <page> — author, revision, date", "getpageinfo <Seite> — Autor, Revision, Datum"],
    ),
    (
        "help.search",
        ["search [title|text] <words> — find pages", "search [title|text] <Wörter> — Seiten finden"],
    ),
    (
        "help.revertpage",
        [
            "revertpage <page> <revision> — revert a page",
            "revertpage <Seite> <Revision> — eine Seite zurücksetzen",
        ],
    ),
    ("help.searchform", ["searchform — a search form", "searchform — ein Suchformular"]),
    (
        "help.subscribe",
        [
            "subscribe <wiki> [page pattern] — messages about changes on any wiki of this hub",
            "subscribe <Wiki> [Seitenmuster] — Nachrichten über Änderungen in jedem Wiki dieses Hubs",
        ],
    ),
    (
        "help.unsubscribe",
        ["unsubscribe <wiki> [page pattern] | all", "unsubscribe <Wiki> [Seitenmuster] | all"],
    ),
    (
        "help.subscriptions",
        ["subscriptions — what you are subscribed to", "subscriptions — deine Abonnements"],
    ),
    ("pong", ["pong", "pong"]),
    (
        "unknown_command",
        [
            "Unknown command {command}. Send help for the list.",
            "Unbekannter Befehl {command}. Sende help für die Liste.",
        ],
    ),
    ("usage", ["Usage: {usage}", "Aufruf: {usage}"]),
    ("empty_page", ["{page} is empty or does not exist.", "{page} ist leer oder existiert nicht."]),
    ("no_wiki", ["This bot is not connected to a wiki.", "Dieser Bot ist mit keinem Wiki verbunden."]),
    (
        "no_account",
        [
            "No wiki account is linked to your Jabber ID.",
            "Mit deiner Jabber-ID ist kein Wiki-Konto verknüpft.",
        ],
    ),
    ("wiki_error", ["The wiki says: {error}", "Das Wiki sagt: {error}"]),
    (
        "wiki_unreachable",
        ["The wiki cannot be reached now: {error}", "Das Wiki ist gerade nicht erreichbar: {error}"],
    ),
    ("not_supported", ["The wiki does not support {command}.", "Das Wiki unterstützt {command} nicht."]),
    ("truncated", ["(cut: {bytes} bytes more)", "(gekürzt: {bytes} Bytes mehr)"]),
    (
        "page_info",
        ["{page}: revision {version} by {author}, {date}", "{page}: Revision {version} von {author}, {date}"],
    ),
    ("page_list", ["{count} pages:", "{count} Seiten:"]),
    (
        "reverted",
        ["Reverted {page} to revision {revision}.", "{page} auf Revision {revision} zurückgesetzt."],
    ),
    ("revert_failed", ["{page} was not reverted.", "{page} wurde nicht zurückgesetzt."]),
    ("search_results", ["{count} results for {query}:", "{count} Treffer für {query}:"]),
    ("search_nothing", ["Nothing found for {query}.", "Nichts gefunden für {query}."]),
    ("form.title", ["Search the wiki", "Im Wiki suchen"]),
    ("form.instructions", ["Fill in and send.", "Ausfüllen und absenden."]),
    ("form.query", ["Search for", "Suche nach"]),
    ("form.type", ["Search in", "Suchen in"]),
    ("form.type.title", ["Page titles", "Seitentiteln"]),
    ("form.type.text", ["Full text", "Volltext"]),
    ("form.case", ["Case sensitive", "Groß-/Kleinschreibung beachten"]),
    ("form.regexp", ["Regular expression", "Regulärer Ausdruck"]),
    ("subscribed", ["Subscribed to {wiki}{pages}.", "{wiki}{pages} abonniert."]),
    (
        "already_subscribed",
        ["You were already subscribed to {wiki}{pages}.", "Du hattest {wiki}{pages} schon abonniert."],
    ),
    ("unsubscribed", ["{count} subscriptions removed.", "{count} Abonnements entfernt."]),
    (
        "too_many_subscriptions",
        [
            "Too many subscriptions (at most {limit}): remove some with unsubscribe first.",
            "Zu viele Abonnements (höchstens {limit}): entferne zuerst welche mit unsubscribe.",
        ],
    ),
    ("subscriptions", ["Your subscriptions:", "Deine Abonnements:"]),
    ("no_subscriptions", ["You have no subscriptions.", "Du hast keine Abonnements."]),
    (
        "no_such_wiki",
        [
            "No wiki {wiki} publishes on this hub. Wikis: {wikis}",
            "Kein Wiki {wiki} veröffentlicht hier. Wikis: {wikis}",
        ],
    ),
    ("bad_pattern", ["{pattern} is not a page pattern: {error}", "{pattern} ist kein Seitenmuster: {error}"]),
    (
        "state_error",
        [
            "Something went wrong here; try again later.",
            "Hier ist etwas schiefgegangen; versuche es später noch einmal.",
        ],
    ),
];

/// The supported language for `lang` (`de-AT` → `de`), English when unknown.
pub fn language(lang: &str) -> &'static str {
    let primary = lang.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    LANGUAGES.iter().copied().find(|known| *known == primary).unwrap_or("en")
}

/// The text of `key` in `lang`; the key itself if it is missing (a programming error, visible).
pub fn text(lang: &str, key: &str) -> &'static str {
    let column = LANGUAGES.iter().position(|known| *known == language(lang)).unwrap_or(0);
    TEXTS.iter().find(|(name, _)| *name == key).map_or("?", |(_, texts)| texts[column])
}

/// `text` with `{name}` placeholders replaced.
pub fn fill(lang: &str, key: &str, values: &[(&str, &str)]) -> String {
    let mut out = text(lang, key).to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(text: &str) -> Vec<&str> {
        let mut found: Vec<&str> =
            text.split('{').skip(1).filter_map(|part| part.split_once('}').map(|(name, _)| name)).collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn every_language_has_every_text_with_the_same_placeholders() {
        for (key, texts) in TEXTS {
            for text in texts {
                assert!(!text.is_empty(), "{key}");
                assert_eq!(placeholders(text), placeholders(texts[0]), "{key}: {text}");
            }
        }
    }

    #[test]
    fn languages_fall_back_to_english() {
        assert_eq!(language("de-AT"), "de");
        assert_eq!(language("he"), "en");
        assert_eq!(
            fill("de", "reverted", &[("page", "Start"), ("revision", "3")]),
            "Start auf Revision 3 zurückgesetzt."
        );
        assert_eq!(text("fr", "pong"), "pong");
    }
}
