//! Server-sent events (the `text/event-stream` format of the HTML standard),
//! decoded incrementally: a body arrives in chunks cut anywhere (inside a
//! line, inside a JSON string, inside a UTF-8 character), and only complete
//! lines are decoded, so no cut is ever seen by the providers.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Event {
    /// The `event:` field, if the server named the event.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// Bytes of the line not yet complete.
    pending: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
    first_line: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("an event stream line is not UTF-8")]
pub(crate) struct NotUtf8;

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            first_line: true,
            ..Decoder::default()
        }
    }

    /// Feeds a chunk; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), NotUtf8> {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(offset) = self.pending[start..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
        {
            let end = start + offset;
            let terminator = self.pending[end];
            let next = match (terminator, self.pending.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                // A lone CR at the end of the chunk may be the first half of CRLF.
                (b'\r', None) => break,
                _ => end + 1,
            };
            let line = std::str::from_utf8(&self.pending[start..end]).map_err(|_| NotUtf8)?;
            let line = line.to_owned();
            self.line(&line, out);
            start = next;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// The end of the body: a last event without its blank line is still
    /// dispatched (lenient: some servers close right after the data).
    pub fn finish(mut self, out: &mut Vec<Event>) -> Result<(), NotUtf8> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let text = std::str::from_utf8(&rest).map_err(|_| NotUtf8)?;
            // A trailing lone CR was a line end.
            let text = text.trim_end_matches('\r').to_owned();
            self.line(&text, out);
        }
        self.dispatch(out);
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // id and retry matter to reconnecting browsers, not to one reply.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let event = self.event.take();
        if std::mem::take(&mut self.has_data) {
            out.push(Event {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(body: &[u8], size: usize) -> Vec<Event> {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for chunk in body.chunks(size) {
            decoder.push(chunk, &mut out).expect("utf-8");
        }
        decoder.finish(&mut out).expect("utf-8");
        out
    }

    #[test]
    fn events_survive_any_chunking() {
        let body = "event: content_block_delta\r\ndata: {\"text\":\"Café \\\"Ltd\\\"\"}\r\n\r\n: ping\n\ndata: a\ndata: b\n\ndata: [DONE]\n\n"
            .as_bytes();
        let whole = decode_in_chunks(body, body.len());
        assert_eq!(
            whole,
            vec![
                Event {
                    event: Some("content_block_delta".into()),
                    data: "{\"text\":\"Café \\\"Ltd\\\"\"}".into()
                },
                Event {
                    event: None,
                    data: "a\nb".into()
                },
                Event {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        // Every cut, including inside the two bytes of "é" and between CR and LF.
        for size in 1..body.len() {
            assert_eq!(decode_in_chunks(body, size), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_kept() {
        assert_eq!(
            decode_in_chunks(b"data: {\"x\":1}", 4),
            vec![Event {
                event: None,
                data: "{\"x\":1}".into()
            }]
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error() {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        assert!(decoder.push(b"data: \xff\xfe\n\n", &mut out).is_err());
    }
}
