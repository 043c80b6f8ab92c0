//! Registration as a pure state machine: fed the server's lines one by one, it says which lines
//! to send back and when the client is registered. No socket here, so every path — CAP 302 in
//! several lines, SASL PLAIN with its chunks and its failures, PASS, a nick taken or refused, a
//! nick that services hold for an account — is tested line by line below, against the replies
//! servers nobody here wrote actually send. [`crate::connection::Connection`] only carries the
//! lines (the way mini-redis keeps `frame` and `parse` pure under `connection`).

use base64::Engine as _;
use wikiwire_irc_wire::numeric::code;
use wikiwire_irc_wire::sasl;
use wikiwire_irc_wire::wire::Request;

use crate::connection::{Auth, ClientError, Login};

/// Nicks tried after the first is taken.
pub const NICK_ATTEMPTS: usize = 5;

/// What one line from the server asks of the client.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Lines to send, without their line ending, in order.
    pub send: Vec<String>,
    /// The welcome burst is over (end of MOTD, or no MOTD): registration is done.
    pub registered: bool,
}

impl Step {
    fn send(line: impl Into<String>) -> Step {
        Step { send: vec![line.into()], registered: false }
    }
}

/// A registration under way, and what the server told about itself.
#[derive(Debug)]
pub struct Registration {
    login: Login,
    wanted: Vec<String>,
    /// Capabilities the server offered (CAP LS may come in several lines).
    offered: Vec<String>,
    /// Other nicks tried so far.
    attempts: usize,
    /// The nick we have (or are asking for).
    pub nick: String,
    /// Capabilities the server acknowledged.
    pub caps: Vec<String>,
    /// The server's software (004), e.g. `wikiwire-0.1.0` or `ngircd-26.1`.
    pub version: String,
    pub isupport: Vec<String>,
}

impl Registration {
    /// A registration of `login`, asking for the capabilities of `wanted` the server offers.
    pub fn new(login: &Login, wanted: &[&str]) -> Registration {
        Registration {
            login: login.clone(),
            wanted: wanted.iter().map(|cap| (*cap).to_owned()).collect(),
            offered: Vec::new(),
            attempts: 0,
            nick: login.nick.clone(),
            caps: Vec::new(),
            version: String::new(),
            isupport: Vec::new(),
        }
    }

    /// The lines that open the registration.
    pub fn start(&self) -> Vec<String> {
        let mut lines = vec!["CAP LS 302".to_owned()];
        if let Auth::Pass(password) = &self.login.auth {
            lines.push(format!("PASS {password}"));
        }
        lines.push(format!("NICK {}", self.login.nick));
        lines.push(format!("USER {} 0 * :{}", self.login.user, self.login.realname));
        lines
    }

    fn sasl(&self) -> bool {
        matches!(self.login.auth, Auth::Sasl { .. })
    }

    /// One line from the server: what to send, whether registration is done, or why it failed.
    pub fn feed(&mut self, message: &Request) -> Result<Step, ClientError> {
        match message.verb.as_str() {
            "CAP" => self.cap(message),
            "AUTHENTICATE" if message.param(0) == Some("+") => Ok(self.authenticate()),
            code::RPL_SASLSUCCESS => Ok(Step::send("CAP END")),
            code::ERR_NICKLOCKED
            | code::ERR_SASLFAIL
            | code::ERR_SASLTOOLONG
            | code::ERR_SASLABORTED
            | code::RPL_SASLMECHS => {
                Err(ClientError::Auth(message.params.last().cloned().unwrap_or_default()))
            }
            code::ERR_PASSWDMISMATCH => Err(ClientError::Auth("password incorrect".into())),
            code::ERR_NICKNAMEINUSE | code::ERR_NICKCOLLISION => {
                self.attempts += 1;
                if self.attempts > NICK_ATTEMPTS {
                    return Err(ClientError::Nick(format!(
                        "{} and {NICK_ATTEMPTS} variants are taken",
                        self.login.nick
                    )));
                }
                Ok(self.another_nick(false))
            }
            // Our own nick is invalid; an alternative may only be too long (NICKLEN comes after
            // registration), so shorter ones are tried.
            code::ERR_ERRONEUSNICKNAME if self.attempts > 0 && self.attempts <= NICK_ATTEMPTS => {
                Ok(self.another_nick(true))
            }
            // Services hold a registered nick for a while after renaming an impostor (InspIRCd
            // answers 432 "Services reserved nickname"): an account holder logs in under another
            // nick, and trust by account still holds.
            code::ERR_ERRONEUSNICKNAME
                if self.attempts == 0 && !matches!(self.login.auth, Auth::None | Auth::Pass(_)) =>
            {
                self.attempts += 1;
                Ok(self.another_nick(false))
            }
            code::ERR_ERRONEUSNICKNAME => {
                Err(ClientError::Nick(format!("{:?} is not a valid nick here", self.nick)))
            }
            code::RPL_WELCOME => {
                if let Some(nick) = message.param(0) {
                    self.nick = nick.to_owned();
                }
                Ok(Step::default())
            }
            code::RPL_MYINFO => {
                self.version = message.param(2).unwrap_or("").to_owned();
                Ok(Step::default())
            }
            code::RPL_ISUPPORT => {
                // The target first, the "are supported by this server" text last.
                let tokens = message.params.iter().skip(1).take(message.params.len().saturating_sub(2));
                self.isupport.extend(tokens.cloned());
                Ok(Step::default())
            }
            code::RPL_ENDOFMOTD | code::ERR_NOMOTD => {
                let mut done = Step { send: Vec::new(), registered: true };
                if let Auth::NickServ { account, password } = &self.login.auth {
                    done.send.push(format!("PRIVMSG NickServ :IDENTIFY {account} {password}"));
                }
                Ok(done)
            }
            _ => Ok(Step::default()),
        }
    }

    fn cap(&mut self, message: &Request) -> Result<Step, ClientError> {
        match message.param(1).unwrap_or("") {
            "LS" => {
                // `CAP * LS * :...` says more lines follow (CAP 302).
                let more = message.params.len() > 3 && message.param(2) == Some("*");
                let list = message.params.last().cloned().unwrap_or_default();
                self.offered.extend(
                    list.split(' ')
                        .filter(|cap| !cap.is_empty())
                        .map(|cap| cap.split('=').next().unwrap_or(cap).to_owned()),
                );
                if more {
                    return Ok(Step::default());
                }
                let offered = |cap: &str| self.offered.iter().any(|offer| offer == cap);
                let mut request: Vec<&str> =
                    self.wanted.iter().map(String::as_str).filter(|cap| offered(cap)).collect();
                if self.sasl() {
                    if !offered("sasl") {
                        return Err(ClientError::Auth("the server offers no SASL".into()));
                    }
                    request.push("sasl");
                }
                Ok(if request.is_empty() {
                    Step::send("CAP END")
                } else {
                    Step::send(format!("CAP REQ :{}", request.join(" ")))
                })
            }
            "ACK" => {
                self.caps = message
                    .params
                    .last()
                    .map(|list| list.split(' ').map(str::to_owned).collect())
                    .unwrap_or_default();
                Ok(if self.sasl() && self.caps.iter().any(|cap| cap == "sasl") {
                    Step::send("AUTHENTICATE PLAIN")
                } else {
                    Step::send("CAP END")
                })
            }
            "NAK" if self.sasl() => Err(ClientError::Auth("the server refused the SASL capability".into())),
            "NAK" => Ok(Step::send("CAP END")),
            _ => Ok(Step::default()),
        }
    }

    /// The PLAIN payload (RFC 4616: authorization id, authentication id, password), in chunks.
    fn authenticate(&self) -> Step {
        let Auth::Sasl { account, password } = &self.login.auth else { return Step::default() };
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("{account}\0{account}\0{password}"));
        let send = sasl::chunks(&payload).into_iter().map(|chunk| format!("AUTHENTICATE {chunk}")).collect();
        Step { send, registered: false }
    }

    fn another_nick(&mut self, short: bool) -> Step {
        self.nick = alternative_nick(&self.login.nick, self.attempts, short);
        Step::send(format!("NICK {}", self.nick))
    }
}

/// The `attempt`-th other nick: `nick_`, `nick__`, ...; `short`, for networks whose NICKLEN the
/// nick already fills: `nic1`, `nic2`, ... (one character replaced by a digit).
fn alternative_nick(nick: &str, attempt: usize, short: bool) -> String {
    if !short {
        return format!("{nick}{}", "_".repeat(attempt));
    }
    let mut base: String = nick.chars().collect();
    base.pop();
    format!("{base}{}", attempt % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(auth: Auth) -> Login {
        Login { nick: "wikirelay".into(), user: "relay".into(), realname: "wikiwire relay".into(), auth }
    }

    fn sasl() -> Auth {
        Auth::Sasl { account: "relay".into(), password: "secret".into() }
    }

    /// Feeds server lines in turn; the lines sent back, and whether the last one registered.
    fn run(registration: &mut Registration, lines: &[&str]) -> Result<Step, ClientError> {
        let mut all = Step::default();
        for line in lines {
            let message = Request::parse(line).unwrap_or_else(|| panic!("{line} parses"));
            let step = registration.feed(&message)?;
            all.send.extend(step.send);
            all.registered = step.registered;
        }
        Ok(all)
    }

    const WELCOME: [&str; 4] = [
        ":irc.example 001 wikirelay :Welcome",
        ":irc.example 004 wikirelay irc.example ngircd-26.1 abc def",
        ":irc.example 005 wikirelay NICKLEN=9 CHANTYPES=# :are supported by this server",
        ":irc.example 376 wikirelay :End of MOTD",
    ];

    #[test]
    fn a_plain_registration_asks_for_what_is_offered_and_reads_the_welcome() {
        let mut registration = Registration::new(&login(Auth::None), &["message-tags", "echo-message"]);
        assert_eq!(registration.start(), ["CAP LS 302", "NICK wikirelay", "USER relay 0 * :wikiwire relay"]);
        let step = run(
            &mut registration,
            &[":irc.example CAP * LS * :multi-prefix message-tags=x", ":irc.example CAP * LS :away-notify"],
        );
        assert_eq!(
            step.unwrap().send,
            ["CAP REQ :message-tags"],
            "echo-message is not offered: not asked for"
        );
        let step = run(&mut registration, &[":irc.example CAP * ACK :message-tags"]).unwrap();
        assert_eq!(step.send, ["CAP END"]);
        let step = run(&mut registration, &WELCOME).unwrap();
        assert!(step.registered && step.send.is_empty());
        assert_eq!(registration.caps, ["message-tags"]);
        assert_eq!(registration.version, "ngircd-26.1");
        assert_eq!(registration.isupport, ["NICKLEN=9", "CHANTYPES=#"]);
    }

    #[test]
    fn a_server_without_capabilities_gets_cap_end() {
        let mut registration = Registration::new(&login(Auth::None), &["message-tags"]);
        assert_eq!(run(&mut registration, &[":old.example CAP * LS :"]).unwrap().send, ["CAP END"]);
        let nak = run(&mut registration, &[":old.example CAP * NAK :message-tags"]).unwrap();
        assert_eq!(nak.send, ["CAP END"]);
        assert!(
            run(&mut registration, &[":old.example 422 wikirelay :MOTD File is missing"]).unwrap().registered
        );
    }

    #[test]
    fn pass_goes_before_nick() {
        let registration = Registration::new(&login(Auth::Pass("moin:token".into())), &[]);
        assert_eq!(registration.start()[..2], ["CAP LS 302".to_owned(), "PASS moin:token".to_owned()]);
        let mut wrong = Registration::new(&login(Auth::Pass("x".into())), &[]);
        let refused = run(&mut wrong, &[":irc.example 464 * :Password incorrect"]).unwrap_err();
        assert!(matches!(refused, ClientError::Auth(_)), "{refused}");
    }

    #[test]
    fn sasl_plain_logs_in_before_cap_end() {
        let mut registration = Registration::new(&login(sasl()), &[]);
        let step = run(&mut registration, &[":irc.example CAP * LS :sasl=PLAIN,EXTERNAL"]).unwrap();
        assert_eq!(step.send, ["CAP REQ :sasl"]);
        let step = run(&mut registration, &[":irc.example CAP * ACK :sasl", "AUTHENTICATE +"]).unwrap();
        let payload = base64::engine::general_purpose::STANDARD.encode("relay\0relay\0secret");
        assert_eq!(step.send, ["AUTHENTICATE PLAIN".to_owned(), format!("AUTHENTICATE {payload}")]);
        let step = run(
            &mut registration,
            &[
                ":irc.example 900 wikirelay a!b@c relay :You are now logged in",
                ":irc.example 903 wikirelay :SASL successful",
            ],
        )
        .unwrap();
        assert_eq!(step.send, ["CAP END"]);
    }

    #[test]
    fn a_long_sasl_payload_goes_in_chunks_and_one_that_fills_them_ends_with_a_plus() {
        for length in [290, 291, 600] {
            let password = "p".repeat(length);
            let login = login(Auth::Sasl { account: "relay".into(), password });
            let registration = Registration::new(&login, &[]);
            let step = registration.authenticate();
            let chunks: Vec<&str> =
                step.send.iter().map(|line| line.trim_start_matches("AUTHENTICATE ")).collect();
            assert!(chunks.iter().all(|chunk| chunk.len() <= sasl::CHUNK), "{length}");
            let joined: String = chunks.iter().filter(|chunk| **chunk != "+").copied().collect();
            let decoded = base64::engine::general_purpose::STANDARD.decode(&joined).unwrap();
            assert_eq!(decoded.len(), 12 + length);
            assert_eq!(
                chunks.last() == Some(&"+"),
                joined.len().is_multiple_of(sasl::CHUNK),
                "{length}: {chunks:?}"
            );
        }
    }

    #[test]
    fn sasl_that_cannot_be_had_is_an_authentication_error() {
        let cases: [&[&str]; 4] = [
            &[":irc.example CAP * LS :multi-prefix"],
            &[":irc.example CAP * LS :sasl", ":irc.example CAP * NAK :sasl"],
            &[
                ":irc.example CAP * LS :sasl",
                ":irc.example CAP * ACK :sasl",
                "AUTHENTICATE +",
                ":irc.example 904 * :SASL authentication failed",
            ],
            &[
                ":irc.example CAP * LS :sasl",
                ":irc.example CAP * ACK :sasl",
                ":irc.example 908 * EXTERNAL :are available SASL mechanisms",
            ],
        ];
        for lines in cases {
            let mut registration = Registration::new(&login(sasl()), &[]);
            let error = run(&mut registration, lines).unwrap_err();
            assert!(matches!(error, ClientError::Auth(_)), "{lines:?}: {error}");
        }
    }

    #[test]
    fn a_taken_nick_is_replaced_a_few_times_then_given_up() {
        let mut registration = Registration::new(&login(Auth::None), &[]);
        let step =
            run(&mut registration, &[":irc.example 433 * wikirelay :Nickname is already in use"]).unwrap();
        assert_eq!(step.send, ["NICK wikirelay_"]);
        // The alternative is too long for NICKLEN: shorter ones are tried.
        let step = run(&mut registration, &[":irc.example 432 * wikirelay_ :Erroneous nickname"]).unwrap();
        assert_eq!(step.send, ["NICK wikirela1"]);
        let step = run(&mut registration, &[":irc.example 001 wikirela1 :Welcome"]).unwrap();
        assert!(step.send.is_empty());
        assert_eq!(registration.nick, "wikirela1");

        let mut registration = Registration::new(&login(Auth::None), &[]);
        let taken = ":irc.example 433 * x :Nickname is already in use";
        let error = run(&mut registration, &[taken; NICK_ATTEMPTS + 1]).unwrap_err();
        assert!(matches!(error, ClientError::Nick(_)), "{error}");
    }

    #[test]
    fn a_nick_services_hold_is_left_by_an_account_holder_and_refused_to_others() {
        let reserved = ":irc.example 432 * wikirelay :Services reserved nickname";
        let mut holder =
            Registration::new(&login(Auth::NickServ { account: "relay".into(), password: "pw".into() }), &[]);
        assert_eq!(run(&mut holder, &[reserved]).unwrap().send, ["NICK wikirelay_"]);
        let done = run(&mut holder, &WELCOME).unwrap();
        assert_eq!(done.send, ["PRIVMSG NickServ :IDENTIFY relay pw"], "identified once registered");
        let mut stranger = Registration::new(&login(Auth::None), &[]);
        assert!(matches!(run(&mut stranger, &[reserved]).unwrap_err(), ClientError::Nick(_)));
    }

    #[test]
    fn alternative_nicks_fit_short_limits_too() {
        assert_eq!(alternative_nick("wikirelay", 1, false), "wikirelay_");
        assert_eq!(alternative_nick("wikirelay", 2, false), "wikirelay__");
        assert_eq!(alternative_nick("wikirelay", 1, true), "wikirela1");
        assert_eq!(alternative_nick("wikirelay", 3, true).len(), 9);
    }
}
