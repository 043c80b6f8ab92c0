//! Actions: the canonical names (seed 2), the MoinMoin edit-log aliases accepted on input (seed 1),
//! and which fields each action requires. One table; validation and documentation read it.

use std::fmt;

/// A field an action can require. Names are the canonical JSON names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    Page,
    User,
    OldName,
    File,
}

impl Required {
    pub fn name(self) -> &'static str {
        match self {
            Required::Page => "page",
            Required::User => "user",
            Required::OldName => "old_name",
            Required::File => "file",
        }
    }
}

struct ActionSpec {
    name: &'static str,
    aliases: &'static [&'static str],
    requires: &'static [Required],
}

use Required::{File, OldName, Page, User};

/// Seed 2's actions with their MoinMoin edit-log aliases (SPEC §2.2).
const ACTIONS: &[ActionSpec] = &[
    ActionSpec { name: "page_changed", aliases: &["SAVE"], requires: &[Page, User] },
    ActionSpec { name: "page_created", aliases: &["SAVENEW"], requires: &[Page, User] },
    ActionSpec { name: "page_deleted", aliases: &[], requires: &[Page, User] },
    ActionSpec { name: "page_renamed", aliases: &["SAVE/RENAME"], requires: &[Page, User, OldName] },
    ActionSpec { name: "page_reverted", aliases: &["SAVE/REVERT"], requires: &[Page, User] },
    ActionSpec { name: "file_attached", aliases: &["ATTNEW", "ATTDRW"], requires: &[Page, User, File] },
    ActionSpec { name: "file_removed", aliases: &["ATTDEL"], requires: &[Page, User, File] },
    ActionSpec { name: "user_created", aliases: &[], requires: &[User] },
];

/// Longest custom action name, from the pattern `[a-z][a-z0-9_]{0,31}`.
const MAX_CUSTOM_LEN: usize = 32;

/// A validated, canonical action name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Action(String);

impl Action {
    pub const PAGE_CHANGED: &'static str = "page_changed";
    pub const PAGE_CREATED: &'static str = "page_created";
    pub const PAGE_DELETED: &'static str = "page_deleted";
    pub const PAGE_RENAMED: &'static str = "page_renamed";
    pub const PAGE_REVERTED: &'static str = "page_reverted";
    pub const FILE_ATTACHED: &'static str = "file_attached";
    pub const FILE_REMOVED: &'static str = "file_removed";
    pub const USER_CREATED: &'static str = "user_created";

    /// Accepts a canonical name, an alias, or a custom name matching `[a-z][a-z0-9_]{0,31}`.
    pub fn parse(text: &str) -> Result<Action, &'static str> {
        if let Some(spec) = ACTIONS.iter().find(|spec| spec.name == text || spec.aliases.contains(&text)) {
            return Ok(Action(spec.name.to_owned()));
        }
        let bytes = text.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= MAX_CUSTOM_LEN
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if well_formed {
            Ok(Action(text.to_owned()))
        } else {
            Err("unknown action: use page_changed, page_created, page_deleted, page_renamed, \
                 page_reverted, file_attached, file_removed, user_created, a MoinMoin alias (SAVE, \
                 SAVENEW, ...) or a name matching [a-z][a-z0-9_]{0,31}")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fields this action cannot do without; custom actions require nothing beyond wiki.
    pub fn required(&self) -> &'static [Required] {
        ACTIONS.iter().find(|spec| spec.name == self.0).map_or(&[], |spec| spec.requires)
    }

    /// True for the eight actions of seed 2.
    pub fn is_canonical(&self) -> bool {
        ACTIONS.iter().any(|spec| spec.name == self.0)
    }

    pub fn canonical_names() -> impl Iterator<Item = &'static str> {
        ACTIONS.iter().map(|spec| spec.name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_canonical_names() {
        for (alias, name) in [
            ("SAVE", "page_changed"),
            ("SAVENEW", "page_created"),
            ("SAVE/REVERT", "page_reverted"),
            ("SAVE/RENAME", "page_renamed"),
            ("ATTNEW", "file_attached"),
            ("ATTDEL", "file_removed"),
            ("ATTDRW", "file_attached"),
        ] {
            assert_eq!(Action::parse(alias).unwrap().as_str(), name);
        }
    }

    #[test]
    fn custom_actions_follow_the_pattern() {
        assert_eq!(Action::parse("antispam_updated").unwrap().as_str(), "antispam_updated");
        assert!(Action::parse("antispam_updated").unwrap().required().is_empty());
        for bad in ["", "Save", "9lives", "a-b", "x".repeat(33).as_str(), "page changed"] {
            assert!(Action::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Action::parse(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn renames_need_the_old_name() {
        let renamed = Action::parse("SAVE/RENAME").unwrap();
        assert!(renamed.required().contains(&Required::OldName));
    }
}
