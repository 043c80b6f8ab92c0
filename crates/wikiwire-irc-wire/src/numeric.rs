//! Numeric replies as one table, shared by the server (which sends them) and the client and relay
//! (which read them): the code and the default text, by name. A reply is built without a target;
//! the server's responder addresses it to the client (its nick, or `*` before registration). An
//! empty text means the caller gives the last parameter itself.
//!
//! Readers match on [`code`]'s constants (`code::ERR_NICKNAMEINUSE`), never on `"433"`. The
//! table also has numerics only other servers send, which our client must understand.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numeric {
    pub code: &'static str,
    pub text: &'static str,
}

macro_rules! numerics {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        $(pub const $name: Numeric = Numeric { code: $code, text: $text };)*
        /// Every numeric known here, for documentation and tests.
        pub const ALL: &[(&str, Numeric)] = &[$((stringify!($name), $name)),*];
        /// The codes by name, usable as `match` patterns on a line's verb.
        pub mod code {
            $(pub const $name: &str = $code;)*
        }
    };
}

numerics! {
    RPL_WELCOME = "001", "";
    RPL_YOURHOST = "002", "";
    RPL_CREATED = "003", "";
    RPL_MYINFO = "004", "";
    RPL_ISUPPORT = "005", "are supported by this server";
    RPL_UMODEIS = "221", "";
    RPL_ADMINME = "256", "Administrative info";
    RPL_ADMINLOC1 = "257", "";
    RPL_ADMINLOC2 = "258", "";
    RPL_ADMINEMAIL = "259", "";
    RPL_LUSERCLIENT = "251", "";
    RPL_LUSEROP = "252", "operator(s) online";
    RPL_LUSERUNKNOWN = "253", "unknown connection(s)";
    RPL_LUSERCHANNELS = "254", "channels formed";
    RPL_LUSERME = "255", "";
    RPL_LOCALUSERS = "265", "";
    RPL_GLOBALUSERS = "266", "";
    RPL_AWAY = "301", "";
    RPL_USERHOST = "302", "";
    RPL_ISON = "303", "";
    RPL_UNAWAY = "305", "You are no longer marked as being away";
    RPL_NOWAWAY = "306", "You have been marked as being away";
    RPL_WHOISUSER = "311", "";
    RPL_WHOISSERVER = "312", "";
    RPL_ENDOFWHO = "315", "End of /WHO list";
    RPL_ENDOFWHOIS = "318", "End of /WHOIS list";
    RPL_WHOISCHANNELS = "319", "";
    RPL_LISTSTART = "321", "Users  Name";
    RPL_LIST = "322", "";
    RPL_LISTEND = "323", "End of /LIST";
    RPL_CHANNELMODEIS = "324", "";
    RPL_CREATIONTIME = "329", "";
    RPL_WHOISACCOUNT = "330", "is logged in as";
    RPL_NOTOPIC = "331", "No topic is set";
    RPL_TOPIC = "332", "";
    RPL_TOPICWHOTIME = "333", "";
    RPL_WHOISBOT = "335", "is a bot";
    RPL_VERSION = "351", "";
    RPL_WHOREPLY = "352", "";
    RPL_NAMREPLY = "353", "";
    RPL_ENDOFNAMES = "366", "End of /NAMES list";
    RPL_ENDOFBANLIST = "368", "End of channel ban list";
    RPL_ENDOFWHOWAS = "369", "End of WHOWAS";
    RPL_INFO = "371", "";
    RPL_MOTD = "372", "";
    RPL_MOTDSTART = "375", "";
    RPL_ENDOFINFO = "374", "End of INFO list";
    RPL_ENDOFMOTD = "376", "End of /MOTD command";
    RPL_TIME = "391", "";
    ERR_INVALIDCAPCMD = "410", "Invalid CAP command";
    ERR_NOSUCHNICK = "401", "No such nick/channel";
    ERR_NOSUCHSERVER = "402", "No such server";
    ERR_NOSUCHCHANNEL = "403", "No such channel";
    ERR_CANNOTSENDTOCHAN = "404", "Cannot send to channel (+m: only its publishers speak here)";
    ERR_TOOMANYCHANNELS = "405", "You have joined too many channels";
    ERR_WASNOSUCHNICK = "406", "There was no such nickname";
    ERR_NORECIPIENT = "411", "No recipient given";
    ERR_NOTEXTTOSEND = "412", "No text to send";
    ERR_INPUTTOOLONG = "417", "Input line was too long";
    ERR_UNKNOWNCOMMAND = "421", "Unknown command";
    ERR_NOMOTD = "422", "MOTD File is missing";
    ERR_NONICKNAMEGIVEN = "431", "No nickname given";
    ERR_ERRONEUSNICKNAME = "432", "Erroneous nickname";
    ERR_NICKNAMEINUSE = "433", "Nickname is already in use";
    ERR_NICKCOLLISION = "436", "Nickname collision";
    ERR_NOTONCHANNEL = "442", "You're not on that channel";
    ERR_NONICKCHANGE = "447", "Publishers keep their nickname";
    ERR_NOTREGISTERED = "451", "You have not registered";
    ERR_NEEDMOREPARAMS = "461", "Not enough parameters";
    ERR_ALREADYREGISTERED = "462", "You may not reregister";
    ERR_PASSWDMISMATCH = "464", "Password incorrect";
    ERR_CHANNELISFULL = "471", "Cannot join channel (+l)";
    ERR_UNKNOWNMODE = "472", "is unknown mode char to me";
    ERR_INVITEONLYCHAN = "473", "Cannot join channel (+i)";
    ERR_BANNEDFROMCHAN = "474", "Cannot join channel (+b)";
    ERR_BADCHANNELKEY = "475", "Cannot join channel (+k)";
    ERR_NEEDREGGEDNICK = "477", "You need to be identified to join or speak in that channel";
    ERR_CHANOPRIVSNEEDED = "482", "You're not channel operator (channels here are run by the hub)";
    ERR_TOOMANYJOINS = "489", "Cannot join channel";
    ERR_UMODEUNKNOWNFLAG = "501", "Unknown MODE flag";
    ERR_USERSDONTMATCH = "502", "Cant change mode for other users";
    ERR_HELPNOTFOUND = "524", "No help available on this topic";
    RPL_HELPSTART = "704", "";
    RPL_HELPTXT = "705", "";
    RPL_ENDOFHELP = "706", "";
    RPL_LOGGEDIN = "900", "";
    ERR_NICKLOCKED = "902", "You must use a nick assigned to you";
    RPL_SASLSUCCESS = "903", "SASL authentication successful";
    ERR_SASLFAIL = "904", "SASL authentication failed";
    ERR_SASLTOOLONG = "905", "SASL message too long";
    ERR_SASLABORTED = "906", "SASL authentication aborted";
    ERR_SASLALREADY = "907", "You have already authenticated using SASL";
    RPL_SASLMECHS = "908", "are available SASL mechanisms";
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_unique_three_digit_numbers() {
        let mut codes: Vec<&str> = super::ALL.iter().map(|(_, numeric)| numeric.code).collect();
        assert!(codes.iter().all(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit())));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), super::ALL.len());
    }
}
