//! The schema of an event's fields: limits in bytes, the table of optional text fields every
//! encoding walks, and the names `extra` may not use. Data only; reading and checking live beside.

use crate::Event;

/// Limits in bytes (SPEC: bytes are counted as bytes). Generous for real wikis, small enough that
/// one event can never be large.
pub mod limits {
    pub const WIKI: usize = 48;
    pub const PAGE: usize = 512;
    pub const USER: usize = 255;
    pub const COMMENT: usize = 4096;
    pub const REVISION: usize = 64;
    pub const FILE: usize = 255;
    pub const KEY: usize = 128;
    pub const URLS: usize = 16;
    pub const URL: usize = 2048;
    pub const URL_DESCRIPTION: usize = 256;
    pub const EXTRA_ENTRIES: usize = 32;
    pub const EXTRA_NAME: usize = 64;
    pub const EXTRA_VALUE: usize = 2048;
}

/// One of the event's optional text fields.
pub struct TextField {
    pub name: &'static str,
    pub get: fn(&Event) -> Option<&str>,
    pub slot: fn(&mut Event) -> &mut Option<String>,
    /// Longest value, in bytes.
    pub limit: usize,
    /// May hold line breaks (only `comment`).
    pub multiline: bool,
    /// A JSON number is taken as its text (MoinMoin sends revisions as strings, others as numbers).
    pub numbers: bool,
    /// When a packed line is too long, fields of lower stages are dropped first (SPEC §2.3:
    /// urls, then comment, then extra, then the rest; `page` and `user` last of all).
    pub packed_stage: usize,
    /// What it holds, for people: `wikiwire publish --help`.
    pub about: &'static str,
}

/// The event's optional text fields, in the order the formats write them: one table for the
/// JSON, XML and packed encodings, for reading fields, for validation, for link templates and for
/// `wikiwire publish`. (`key` is also a text field, but each encoding puts it after the links: it
/// is not part of the change, only of its delivery.) Packed lines write the multi-line `comment`
/// after the other fields, as it is the first of them to be dropped.
pub const TEXT_FIELDS: &[TextField] = &[
    TextField {
        name: "page",
        get: |event| event.page.as_deref(),
        slot: |event| &mut event.page,
        limit: limits::PAGE,
        multiline: false,
        numbers: false,
        packed_stage: 5,
        about: "The page's name (any Unicode)",
    },
    TextField {
        name: "user",
        get: |event| event.user.as_deref(),
        slot: |event| &mut event.user,
        limit: limits::USER,
        multiline: false,
        numbers: false,
        packed_stage: 4,
        about: "Who made the change",
    },
    TextField {
        name: "comment",
        get: |event| event.comment.as_deref(),
        slot: |event| &mut event.comment,
        limit: limits::COMMENT,
        multiline: true,
        numbers: false,
        packed_stage: 1,
        about: "The edit summary",
    },
    TextField {
        name: "revision",
        get: |event| event.revision.as_deref(),
        slot: |event| &mut event.revision,
        limit: limits::REVISION,
        multiline: false,
        numbers: true,
        packed_stage: 3,
        about: "The revision the change made",
    },
    TextField {
        name: "old_revision",
        get: |event| event.old_revision.as_deref(),
        slot: |event| &mut event.old_revision,
        limit: limits::REVISION,
        multiline: false,
        numbers: true,
        packed_stage: 3,
        about: "The revision before the change",
    },
    TextField {
        name: "old_name",
        get: |event| event.old_name.as_deref(),
        slot: |event| &mut event.old_name,
        limit: limits::PAGE,
        multiline: false,
        numbers: false,
        packed_stage: 3,
        about: "The page's name before a rename (required for page_renamed)",
    },
    TextField {
        name: "file",
        get: |event| event.file.as_deref(),
        slot: |event| &mut event.file,
        limit: limits::FILE,
        multiline: false,
        numbers: false,
        packed_stage: 3,
        about: "The attachment's name (required for file_attached and file_removed)",
    },
];

/// The text field of this name.
pub fn text_field(name: &str) -> Option<&'static TextField> {
    TEXT_FIELDS.iter().find(|field| field.name == name)
}

/// Names with a meaning in some encoding; `extra` may not use them.
pub const RESERVED_NAMES: &[&str] = &[
    "id",
    "time",
    "wiki",
    "action",
    "page",
    "user",
    "editor",
    "comment",
    "revision",
    "old_revision",
    "old_name",
    "file",
    "size",
    "minor",
    "bot",
    "urls",
    "url",
    "url_description",
    "key",
    "extra",
    "more",
];
