//! A child's stderr: always read to the end, so a chatty child never blocks on a full pipe, and
//! only the last few KiB kept, for error messages.

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of the end of stderr is kept.
pub const TAIL_BYTES: usize = 8 * 1024;

/// The last [`TAIL_BYTES`] a child wrote to stderr, and how much it wrote in all.
#[derive(Debug, Default)]
pub struct StderrTail {
    /// At most twice the tail, so trimming it is rare and cheap.
    buf: Vec<u8>,
    total: u64,
}

impl StderrTail {
    /// Takes the next bytes the child wrote, keeping only the tail.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if bytes.len() >= TAIL_BYTES {
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * TAIL_BYTES {
            let cut = self.buf.len() - TAIL_BYTES;
            self.buf.drain(..cut);
        }
    }

    /// Forgets what was written so far (a keep-alive child starting a new request).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.total = 0;
    }

    /// Bytes written in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept bytes (at most [`TAIL_BYTES`]) as text, trimmed; `…` marks a cut start.
    pub fn text(&self) -> String {
        let mut kept = &self.buf[self.buf.len().saturating_sub(TAIL_BYTES)..];
        let cut = (kept.len() as u64) < self.total;
        if cut {
            // Start on a character, not inside one that was cut in half.
            while let [b, rest @ ..] = kept
                && b & 0xC0 == 0x80
            {
                kept = rest;
            }
        }
        let text = String::from_utf8_lossy(kept);
        let text = text.trim();
        if cut && !text.is_empty() { format!("…{text}") } else { text.to_string() }
    }

    /// `message`, followed by the tail when there is one.
    pub fn append_to(&self, message: String) -> String {
        self.append_as(message, "stderr")
    }

    /// `message`, followed by the tail, introduced as `label` (`stderr`, `print`).
    pub fn append_as(&self, message: String, label: &str) -> String {
        let text = self.text();
        if text.is_empty() {
            return message;
        }
        if self.total > TAIL_BYTES as u64 {
            format!("{message}; {label} (last {} KiB of {} bytes): {text}", TAIL_BYTES / 1024, self.total)
        } else {
            format!("{message}; {label}: {text}")
        }
    }
}

/// Reads `stderr` to the end, handing every chunk to `keep`. A read error ends it like an end
/// of file: the child's exit status says what happened.
pub async fn drain(mut stderr: impl AsyncRead + Unpin, mut keep: impl FnMut(&[u8])) {
    let mut chunk = vec![0u8; 16 * 1024];
    while let Ok(n) = stderr.read(&mut chunk).await
        && n > 0
    {
        keep(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_tail_of_everything() {
        let mut tail = StderrTail::default();
        assert_eq!(tail.append_to("failed".into()), "failed");
        tail.push(b"  first line\n");
        assert_eq!(tail.append_to("failed".into()), "failed; stderr: first line");
        for i in 0..10_000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES + "…".len(), "{}", text.len());
        assert!(text.starts_with('…') && text.ends_with("line 9999"), "{text}");
        assert!(tail.append_to("x".into()).starts_with("x; stderr (last 8 KiB of "));
        tail.push(&vec![b'z'; 3 * TAIL_BYTES]);
        assert_eq!(tail.text().len(), TAIL_BYTES + "…".len());
        tail.clear();
        assert_eq!((tail.text(), tail.total()), (String::new(), 0));
    }

    #[test]
    fn a_cut_tail_starts_on_a_whole_character() {
        let mut tail = StderrTail::default();
        // 'é' is two bytes; an odd cut lands inside one.
        tail.push("é".repeat(TAIL_BYTES).as_bytes());
        tail.push(b"x");
        let text = tail.text();
        assert!(!text.contains('\u{fffd}'), "no replacement character at the cut");
        assert!(text.starts_with("…é") && text.ends_with("éx"));
    }
}
