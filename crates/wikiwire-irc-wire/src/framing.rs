//! Reading lines with the limits applied *while* reading (SPEC §3, Modern IRC): a client may send
//! 4096 bytes of tags and a server 8191, each plus 512 bytes of message including CR LF; a lone LF
//! also ends a line; a longer line is reported once (the server answers 417) and its rest is
//! discarded without buffering; invalid UTF-8 is reported, never decoded lossily.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Tag section a client may send, including the leading `@` and the space after it.
pub const MAX_TAGS: usize = 4096;
/// Tag section a server may send (IRCv3 message-tags: 8191 bytes).
pub const MAX_SERVER_TAGS: usize = 8191;
/// The message after the tags, excluding the line ending.
pub const MAX_MESSAGE: usize = 510;
/// Longest client line buffered before it is declared too long (line ending included).
pub const MAX_LINE: usize = MAX_TAGS + MAX_MESSAGE + 2;

/// The limits of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub tags: usize,
    pub message: usize,
}

impl Limits {
    /// What a server accepts from a client.
    pub const FROM_CLIENT: Limits = Limits { tags: MAX_TAGS, message: MAX_MESSAGE };
    /// What a client accepts from a server.
    pub const FROM_SERVER: Limits = Limits { tags: MAX_SERVER_TAGS, message: MAX_MESSAGE };

    fn line(self) -> usize {
        self.tags + self.message + 2
    }
}

/// What one complete line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Line(String),
    /// Over the limits (417); its bytes were dropped. `label`: the line's `label` tag, when its
    /// tags were read, so the refusal still answers the request (IRCv3 labeled-response).
    TooLong {
        label: Option<String>,
    },
    /// Not UTF-8 (the server advertises UTF8ONLY); dropped. `label` as for `TooLong`.
    InvalidUtf8 {
        label: Option<String>,
    },
}

/// The `label` tag of a line's tag section, if the section was read whole and is UTF-8; the
/// rest of the line (too long, or not UTF-8) is never decoded.
pub fn label_of(content: &[u8]) -> Option<String> {
    if content.first() != Some(&b'@') {
        return None;
    }
    let end = content.iter().take(MAX_TAGS).position(|&b| b == b' ')?;
    let tags = std::str::from_utf8(&content[..end]).ok()?;
    // Parsed as a line of its own, so the tag's escapes are read as for any other line.
    let request = crate::wire::Request::parse(&format!("{tags} PING x"))?;
    request.tag("label").filter(|label| !label.is_empty()).map(str::to_owned)
}

/// Splits the next complete client line off `buffer`, if there is one. `discarding` is true while
/// the tail of an over-long line is being skipped.
pub fn next_frame(buffer: &mut BytesMut, discarding: &mut bool) -> Option<Frame> {
    next_frame_within(buffer, discarding, Limits::FROM_CLIENT)
}

/// `next_frame` with the limits of either direction.
pub fn next_frame_within(buffer: &mut BytesMut, discarding: &mut bool, limits: Limits) -> Option<Frame> {
    loop {
        let Some(end) = buffer.iter().position(|&b| b == b'\n') else {
            if buffer.len() > limits.line() {
                // Drop what we have; keep dropping until the line ends.
                let first = !*discarding;
                let label = if first { label_of(&buffer[..]) } else { None };
                buffer.clear();
                *discarding = true;
                return first.then_some(Frame::TooLong { label });
            }
            return None;
        };
        let line = buffer.split_to(end + 1);
        if std::mem::take(discarding) {
            continue;
        }
        let mut content = &line[..end];
        if content.last() == Some(&b'\r') {
            content = &content[..content.len() - 1];
        }
        if content.iter().all(|b| *b == b' ' || *b == b'\r') {
            continue; // Empty lines are ignored (RFC 1459 §2.3.1).
        }
        if too_long(content, limits) {
            return Some(Frame::TooLong { label: label_of(content) });
        }
        return Some(match std::str::from_utf8(content) {
            Ok(text) => Frame::Line(text.to_owned()),
            Err(_) => Frame::InvalidUtf8 { label: label_of(content) },
        });
    }
}

fn too_long(content: &[u8], limits: Limits) -> bool {
    let message = if content.first() == Some(&b'@') {
        match content.iter().position(|&b| b == b' ') {
            Some(space) if space < limits.tags => &content[space + 1..],
            _ => return true,
        }
    } else {
        content
    };
    message.len() > limits.message
}

/// Buffered, bounded line reading from a socket half.
pub struct LineReader<R> {
    reader: R,
    buffer: BytesMut,
    discarding: bool,
    limits: Limits,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of client lines (the server's side).
    pub fn new(reader: R) -> LineReader<R> {
        LineReader::with_limits(reader, Limits::FROM_CLIENT)
    }

    pub fn with_limits(reader: R, limits: Limits) -> LineReader<R> {
        LineReader { reader, buffer: BytesMut::new(), discarding: false, limits }
    }

    /// The next frame, or `None` at end of stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = next_frame_within(&mut self.buffer, &mut self.discarding, self.limits) {
                return Ok(Some(frame));
            }
            // Room for one more read; the buffer never holds more than a line and a read beyond
            // it, and an idle client keeps it small.
            if self.buffer.capacity() - self.buffer.len() < 512 {
                self.buffer.reserve(1024);
            }
            let read = (&mut self.reader).take(4096).read_buf(&mut self.buffer).await?;
            if read == 0 {
                return Ok(None);
            }
        }
    }

    /// Bytes read but not yet framed (for tests).
    pub fn pending(&self) -> usize {
        self.buffer.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(input: &[u8]) -> Vec<Frame> {
        let mut buffer = BytesMut::from(input);
        let mut discarding = false;
        std::iter::from_fn(|| next_frame(&mut buffer, &mut discarding)).collect()
    }

    #[test]
    fn crlf_lone_lf_and_empty_lines() {
        assert_eq!(
            frames(b"NICK a\r\nUSER a 0 * :A\n\r\n\nPING x\r\n"),
            vec![
                Frame::Line("NICK a".into()),
                Frame::Line("USER a 0 * :A".into()),
                Frame::Line("PING x".into())
            ]
        );
    }

    #[test]
    fn limits_count_bytes_and_tags_separately() {
        let message = format!("PRIVMSG #c :{}", "é".repeat(249)); // 12 + 498 = 510 bytes
        assert_eq!(message.len(), 510);
        let tags = format!("@{} ", "a".repeat(4094)); // 4096 bytes of tags
        assert_eq!(
            frames(format!("{tags}{message}\r\n").as_bytes()),
            vec![Frame::Line(format!("{tags}{message}"))]
        );
        assert_eq!(frames(format!("{message}x\r\n").as_bytes()), vec![Frame::TooLong { label: None }]);
        assert_eq!(
            frames(format!("@{} {message}\r\n", "a".repeat(4095)).as_bytes()),
            vec![Frame::TooLong { label: None }]
        );
    }

    #[test]
    fn servers_may_send_more_tags() {
        let line = format!("@{} PRIVMSG #c :x\r\n", "t".repeat(8000));
        let mut buffer = BytesMut::from(line.as_bytes());
        let mut discarding = false;
        assert!(matches!(
            next_frame_within(&mut buffer, &mut discarding, Limits::FROM_SERVER),
            Some(Frame::Line(_))
        ));
        assert_eq!(frames(line.as_bytes()), vec![Frame::TooLong { label: None }]);
    }

    #[test]
    fn an_endless_line_is_reported_once_and_skipped() {
        let mut input = vec![b'x'; 20_000];
        input.extend_from_slice(b"\r\nPING ok\r\n");
        assert_eq!(frames(&input), vec![Frame::TooLong { label: None }, Frame::Line("PING ok".into())]);
    }

    #[test]
    fn invalid_utf8_is_a_frame_of_its_own() {
        assert_eq!(
            frames(b"PRIVMSG #c :\xff\xfe\r\nPING a\r\n"),
            vec![Frame::InvalidUtf8 { label: None }, Frame::Line("PING a".into())]
        );
    }

    #[test]
    fn refused_lines_keep_their_label() {
        let long = format!("@label=a\\sb;+x=1 PRIVMSG #c :{}\r\n", "x".repeat(600));
        assert_eq!(frames(long.as_bytes()), vec![Frame::TooLong { label: Some("a b".into()) }]);
        // Longer than a whole line: the label is read from what was buffered.
        let endless = format!("@label=L7 PRIVMSG #c :{}\r\nPING a\r\n", "x".repeat(20_000));
        assert_eq!(
            frames(endless.as_bytes()),
            vec![Frame::TooLong { label: Some("L7".into()) }, Frame::Line("PING a".into())]
        );
        assert_eq!(
            frames(b"@label=u8 PRIVMSG #c :\xff\r\n@label=\xff PRIVMSG #c :\xff\r\n"),
            vec![Frame::InvalidUtf8 { label: Some("u8".into()) }, Frame::InvalidUtf8 { label: None }]
        );
    }

    #[tokio::test]
    async fn the_reader_never_buffers_past_one_line_and_a_read() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client.write_all(&vec![b'y'; 200_000]).await.unwrap();
            client.write_all(b"\r\nQUIT\r\n").await.unwrap();
        });
        let mut reader = LineReader::new(server);
        assert_eq!(reader.next().await.unwrap(), Some(Frame::TooLong { label: None }));
        assert!(reader.pending() <= MAX_LINE + 4096);
        assert_eq!(reader.next().await.unwrap(), Some(Frame::Line("QUIT".into())));
        writer.await.unwrap();
    }

    proptest! {
        #[test]
        fn any_bytes_frame_without_panic_and_within_limits(input in proptest::collection::vec(any::<u8>(), 0..12_000)) {
            for frame in frames(&input) {
                if let Frame::Line(line) = frame {
                    prop_assert!(line.len() <= MAX_TAGS + MAX_MESSAGE);
                    prop_assert!(!line.contains('\n'));
                }
            }
        }
    }
}
