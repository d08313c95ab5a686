//! Cutting a child's stdout into items, in the three framings of docs/agents.md: NDJSON lines, SSE
//! events and length-prefixed frames. Decoders are fed bytes as they arrive, in chunks that may
//! end anywhere (inside a line, a `\r\n`, a length prefix or a payload), and hand each complete
//! item to a callback with its position for error messages. They know nothing of JSON.

use std::fmt;

use super::StreamMode;

/// The largest line, event or frame a child may send.
pub const MAX_ITEM: usize = 16 * 1024 * 1024;

/// Where an item was in the stream (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// An NDJSON line.
    Line(u64),
    /// An SSE event, by the line of its first `data:` field.
    Event(u64),
    /// A length-prefixed frame.
    Frame(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "stdout line {n}"),
            Position::Event(n) => write!(f, "stdout event at line {n}"),
            Position::Frame(n) => write!(f, "stdout frame {n}"),
        }
    }
}

/// What a decoder hands over for each item; an `Err` stops decoding.
pub type Sink<'s> = dyn FnMut(&[u8], Position) -> Result<(), String> + 's;

/// What the line splitter hands over for each line (without its `\n` or `\r\n`) with its number.
type LineSink<'s> = dyn FnMut(&[u8], u64) -> Result<(), String> + 's;

/// A decoder for one framing.
#[derive(Debug)]
pub enum Decoder {
    /// Splits NDJSON lines.
    Ndjson(Lines),
    /// Joins Server-Sent Events.
    Sse(Sse),
    /// Reads length-prefixed frames.
    Frames(Frames),
}

impl Decoder {
    /// The decoder for `mode`; plain mode has none.
    pub fn for_mode(mode: StreamMode) -> Option<Decoder> {
        match mode {
            StreamMode::Plain => None,
            StreamMode::NdjsonLines => Some(Decoder::Ndjson(Lines::default())),
            StreamMode::SseEvents => Some(Decoder::Sse(Sse::default())),
            StreamMode::LengthPrefixed => Some(Decoder::Frames(Frames::default())),
        }
    }

    /// Decodes `bytes`, handing every item they complete to `sink`.
    pub fn feed(&mut self, bytes: &[u8], sink: &mut Sink) -> Result<(), String> {
        match self {
            Decoder::Ndjson(lines) => lines.feed(bytes, &mut |line, n| ndjson_line(line, n, sink)),
            Decoder::Sse(sse) => sse.feed(bytes, sink),
            Decoder::Frames(frames) => frames.feed(bytes, sink),
        }
    }

    /// The stream ended: hands over a last item without its terminator, or fails on a cut one.
    pub fn finish(&mut self, sink: &mut Sink) -> Result<(), String> {
        match self {
            Decoder::Ndjson(lines) => lines.finish(&mut |line, n| ndjson_line(line, n, sink)),
            Decoder::Sse(sse) => sse.finish(sink),
            Decoder::Frames(frames) => frames.finish(),
        }
    }

    /// Whether bytes of an unfinished item are buffered.
    pub fn has_pending(&self) -> bool {
        match self {
            Decoder::Ndjson(lines) => !lines.buf.is_empty(),
            Decoder::Sse(sse) => !sse.lines.buf.is_empty() || sse.data.is_some(),
            Decoder::Frames(frames) => !frames.buf.is_empty(),
        }
    }
}

/// NDJSON: every line that is not blank is an item.
fn ndjson_line(line: &[u8], n: u64, sink: &mut Sink) -> Result<(), String> {
    if line.iter().all(u8::is_ascii_whitespace) { Ok(()) } else { sink(line, Position::Line(n)) }
}

/// Splits bytes into lines at `\n`, dropping a `\r` before it.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no `\n`, so a long line is scanned once.
    scanned: usize,
    /// Lines handed over so far.
    line: u64,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8], each: &mut LineSink) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + offset;
            self.line += 1;
            each(strip_cr(&self.buf[start..end]), self.line)?;
            start = end + 1;
            self.scanned = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_ITEM {
            return Err(format!("stdout line {} is longer than the 16 MiB limit", self.line + 1));
        }
        Ok(())
    }

    /// The last line, if the stream did not end with `\n`.
    fn finish(&mut self, each: &mut LineSink) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        self.line += 1;
        each(strip_cr(&rest), self.line)
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Server-sent events: `data:` lines (one optional space after the colon), joined with `\n`;
/// a blank line ends an event, and so does the end of the stream.
#[derive(Debug, Default)]
pub struct Sse {
    lines: Lines,
    /// The current event's data and the line of its first `data:` field.
    data: Option<(Vec<u8>, u64)>,
}

impl Sse {
    fn feed(&mut self, bytes: &[u8], sink: &mut Sink) -> Result<(), String> {
        let data = &mut self.data;
        self.lines.feed(bytes, &mut |line, n| sse_line(data, line, n, sink))
    }

    fn finish(&mut self, sink: &mut Sink) -> Result<(), String> {
        let data = &mut self.data;
        self.lines.finish(&mut |line, n| sse_line(data, line, n, sink))?;
        dispatch(data, sink)
    }
}

fn sse_line(data: &mut Option<(Vec<u8>, u64)>, line: &[u8], n: u64, sink: &mut Sink) -> Result<(), String> {
    if line.is_empty() {
        return dispatch(data, sink);
    }
    if line[0] == b':' {
        return Ok(());
    }
    let (field, value) = match line.iter().position(|&b| b == b':') {
        Some(colon) => (&line[..colon], &line[colon + 1..]),
        None => (line, &b""[..]),
    };
    let value = value.strip_prefix(b" ").unwrap_or(value);
    match field {
        b"data" => {
            let (buf, _) = data.get_or_insert_with(|| (Vec::new(), n));
            if buf.len() + value.len() > MAX_ITEM {
                return Err(format!("stdout line {n}: the event is longer than the 16 MiB limit"));
            }
            buf.extend_from_slice(value);
            buf.push(b'\n');
            Ok(())
        }
        b"event" | b"id" | b"retry" => Ok(()),
        _ => Err(format!(
            "stdout line {n} is not an SSE field (data:, event:, id:, retry: or a ':' comment): {}",
            preview(line)
        )),
    }
}

/// Hands over the event gathered so far, if it has data.
fn dispatch(data: &mut Option<(Vec<u8>, u64)>, sink: &mut Sink) -> Result<(), String> {
    match data.take() {
        Some((mut buf, first)) => {
            buf.pop(); // the `\n` after the last data line
            sink(&buf, Position::Event(first))
        }
        None => Ok(()),
    }
}

/// Frames: a 4-byte big-endian length, then that many bytes.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// Frames handed over so far.
    frame: u64,
}

impl Frames {
    fn feed(&mut self, bytes: &[u8], sink: &mut Sink) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(header) = self.buf.get(start..start + 4) {
            let len = u32::from_be_bytes(header.try_into().expect("four bytes")) as usize;
            let n = self.frame + 1;
            if len == 0 {
                return Err(format!("stdout frame {n} has length 0"));
            }
            if len > MAX_ITEM {
                return Err(format!("stdout frame {n} declares {len} bytes, over the 16 MiB limit"));
            }
            let Some(payload) = self.buf.get(start + 4..start + 4 + len) else { break };
            sink(payload, Position::Frame(n))?;
            self.frame = n;
            start += 4 + len;
        }
        self.buf.drain(..start);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        let n = self.frame + 1;
        match self.buf.len() {
            0 => Ok(()),
            have @ 1..4 => Err(format!("stdout ended inside the length of frame {n} ({have} of 4 bytes)")),
            have => {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("four bytes"));
                Err(format!("stdout ended inside frame {n} ({} of {len} bytes)", have - 4))
            }
        }
    }
}

/// The start of `bytes` as quoted text, for error messages.
pub fn preview(bytes: &[u8]) -> String {
    const CHARS: usize = 120;
    let head = &bytes[..bytes.len().min(CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    let mut shown: String = text.chars().take(CHARS).collect();
    if head.len() < bytes.len() || text.chars().nth(CHARS).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
