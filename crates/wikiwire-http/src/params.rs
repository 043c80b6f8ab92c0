//! Query parameters, decoded strictly: a broken escape or invalid UTF-8 is a 400 naming the
//! parameter, never a silent replacement. Every endpoint reads its parameters through `Params`,
//! and what is left over must be a filter key.

use wikiwire_event::{Filter, Timestamp};

use crate::error::ApiError;

/// Most parameters one request may carry.
const MAX_PARAMS: usize = 64;

pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params, ApiError> {
        let mut pairs = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            if pairs.len() == MAX_PARAMS {
                return Err(ApiError::bad_field("query", format!("at most {MAX_PARAMS} parameters")));
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode("query", name)?;
            let value = decode(&name, value)?;
            pairs.push((name, value));
        }
        Ok(Params { pairs })
    }

    /// Removes and returns a parameter that may appear once.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        let mut found = None;
        let mut error = None;
        self.pairs.retain(|(key, value)| {
            if key != name {
                return true;
            }
            if found.replace(value.clone()).is_some() {
                error = Some(ApiError::bad_field(name, format!("{name}: given more than once")));
            }
            false
        });
        match error {
            Some(error) => Err(error),
            None => Ok(found),
        }
    }

    /// Removes one pair `name=value` if present (`/?action=changes`).
    pub fn take_exact(&mut self, name: &str, value: &str) -> bool {
        match self.pairs.iter().position(|(key, found)| key == name && found == value) {
            Some(index) => {
                self.pairs.remove(index);
                true
            }
            None => false,
        }
    }

    pub fn take_id(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        self.take(name)?
            .map(|text| {
                parse_id(&text).ok_or_else(|| {
                    ApiError::bad_field(name, format!("{name}: must be an event id (a non-negative integer)"))
                })
            })
            .transpose()
    }

    pub fn take_time(&mut self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.take(name)?
            .map(|text| {
                Timestamp::parse(&text).map_err(|error| ApiError::bad_field(name, format!("{name}: {error}")))
            })
            .transpose()
    }

    /// A yes/no parameter: `true`/`1` or `false`/`0`; absent is no.
    pub fn take_flag(&mut self, name: &str) -> Result<bool, ApiError> {
        match self.take(name)?.as_deref() {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(_) => Err(ApiError::bad_field(name, format!("{name}: true or false"))),
        }
    }

    pub fn take_limit(&mut self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.take("limit")? {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
                _ => Err(ApiError::bad_field("limit", format!("limit: must be between 1 and {max}"))),
            },
        }
    }

    /// The remaining parameters as a filter; `_` (a cache buster) is ignored, anything else
    /// unknown is an error.
    pub fn into_filter(self) -> Result<Filter, ApiError> {
        let pairs = self.pairs.iter().filter(|(name, _)| name != "_");
        let mut filter = Filter::all();
        for (name, value) in pairs {
            if !Filter::KEYS.contains(&name.as_str()) {
                return Err(ApiError::bad_field(name.clone(), format!("{name}: unknown parameter")));
            }
            filter.add(name, value)?;
        }
        Ok(filter)
    }
}

impl Params {
    /// The filter keys among the remaining parameters; others are ignored (EventStreams' rule
    /// for `/v2/stream`, whose clients add parameters of their own).
    pub fn into_known_filter(self) -> Result<Filter, ApiError> {
        let mut filter = Filter::all();
        for (name, value) in self.pairs.iter().filter(|(name, _)| Filter::KEYS.contains(&name.as_str())) {
            filter.add(name, value)?;
        }
        Ok(filter)
    }
}

pub fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn decode(field: &str, text: &str) -> Result<String, ApiError> {
    let spaced = text.replace('+', " ");
    let bytes: Vec<u8> = {
        let raw = spaced.as_bytes();
        let mut out = Vec::with_capacity(raw.len());
        let mut index = 0;
        while index < raw.len() {
            if raw[index] == b'%' {
                let hex = raw.get(index + 1..index + 3).and_then(|hex| std::str::from_utf8(hex).ok());
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => out.push(byte),
                    None => return Err(ApiError::bad_field(field, format!("{field}: malformed %-escape"))),
                }
                index += 3;
            } else {
                out.push(raw[index]);
                index += 1;
            }
        }
        out
    };
    String::from_utf8(bytes).map_err(|_| ApiError::bad_field(field, format!("{field}: not valid UTF-8")))
}
