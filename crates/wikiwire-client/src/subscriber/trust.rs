//! Who may speak for the channel, followed through MODE, PART, KICK, QUIT and NICK.

use std::collections::HashSet;

use wikiwire_irc_wire::wire::Request;

use crate::connection::{Joined, SPEAKING_PREFIXES};

/// Who may speak for the channel: voiced (or better) members, named ones if `trust` was given,
/// whose account (when the server tags it) agrees.
pub(super) struct Trust {
    named: Vec<String>,
    speakers: HashSet<String>,
    accounts: bool,
}

impl Trust {
    pub(super) fn new(named: &[String], joined: &Joined, accounts: bool) -> Trust {
        let speakers = joined
            .members
            .iter()
            .filter(|(prefixes, _)| prefixes.chars().any(|c| SPEAKING_PREFIXES.contains(c)))
            .map(|(_, nick)| nick.to_ascii_lowercase())
            .collect();
        Trust { named: named.iter().map(|name| name.to_ascii_lowercase()).collect(), speakers, accounts }
    }

    pub(super) fn allows(&self, message: &Request) -> bool {
        let Some(nick) = message.source_nick().map(str::to_ascii_lowercase) else { return false };
        if !self.speakers.contains(&nick) {
            return false;
        }
        let account = message.tag("account").map(str::to_ascii_lowercase);
        match (self.named.is_empty(), account) {
            (true, Some(account)) => account == nick,
            // With account-tag, a message without an account comes from someone not logged in.
            (true, None) => !self.accounts,
            (false, Some(account)) => self.named.contains(&account),
            (false, None) => !self.accounts && self.named.contains(&nick),
        }
    }

    /// Whether a line recorded in history counts: named speakers when names were given, else
    /// any (the channel was moderated), with the account, where tagged, agreeing.
    pub(super) fn recorded(&self, message: &Request) -> bool {
        let Some(nick) = message.source_nick().map(str::to_ascii_lowercase) else { return false };
        let account = message.tag("account").map(str::to_ascii_lowercase);
        match (self.named.is_empty(), account) {
            (true, Some(account)) => account == nick,
            (true, None) => true,
            (false, Some(account)) => self.named.contains(&account),
            (false, None) => self.named.contains(&nick),
        }
    }

    /// Follows membership and mode changes; returns why the channel stopped being trustworthy.
    pub(super) fn update(&mut self, message: &Request, channel: &str) -> Option<String> {
        let nick = message.source_nick().unwrap_or("").to_ascii_lowercase();
        let on_channel = message.param(0).is_some_and(|target| target.eq_ignore_ascii_case(channel));
        match message.verb.as_str() {
            "MODE" if on_channel => {
                for (adding, mode, argument) in message.mode_changes() {
                    match (mode, argument) {
                        ('m', _) if !adding => {
                            return Some(format!("{channel} lost +m: anyone could speak there"));
                        }
                        ('q' | 'a' | 'o' | 'h' | 'v', Some(target)) => {
                            let target = target.to_ascii_lowercase();
                            if adding {
                                self.speakers.insert(target);
                            } else {
                                self.speakers.remove(&target);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "PART" if on_channel => {
                self.speakers.remove(&nick);
            }
            "KICK" if on_channel => {
                if let Some(target) = message.param(1) {
                    self.speakers.remove(&target.to_ascii_lowercase());
                }
            }
            "QUIT" => {
                self.speakers.remove(&nick);
            }
            "NICK" if self.speakers.remove(&nick) => {
                if let Some(new) = message.param(0) {
                    self.speakers.insert(new.to_ascii_lowercase());
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Request {
        Request::parse(line).unwrap()
    }

    #[test]
    fn trust_needs_voice_names_and_accounts() {
        let joined = Joined {
            members: vec![("+".into(), "moin".into()), (String::new(), "eve".into())],
            ..Joined::default()
        };
        let open = Trust::new(&[], &joined, true);
        assert!(open.allows(&request("@account=moin :moin!m@h PRIVMSG #c :x")));
        assert!(!open.allows(&request("@account=eve :moin!m@h PRIVMSG #c :x")), "account must agree");
        assert!(!open.allows(&request("@account=eve :eve!e@h PRIVMSG #c :x")), "not voiced");
        let named = Trust::new(
            &["relay".into()],
            &Joined { members: vec![("@".into(), "relay".into())], ..Joined::default() },
            false,
        );
        assert!(named.allows(&request(":relay!r@h PRIVMSG #c :x")));
        let mut changing = Trust::new(&[], &joined, false);
        changing.update(&request(":op!o@h MODE #c -v moin"), "#c");
        assert!(!changing.allows(&request(":moin!m@h PRIVMSG #c :x")));
        assert!(changing.update(&request(":op!o@h MODE #c -m"), "#c").is_some());
    }
}
