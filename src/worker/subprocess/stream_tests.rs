//! The framings, fed whole, in two chunks split at every byte, and one byte at a time: the
//! items must not depend on where the reads happened to end.

use super::*;

type Items = Vec<(String, Position)>;

fn decode(mode: StreamMode, chunks: &[&[u8]]) -> Result<Items, String> {
    let mut decoder = Decoder::for_mode(mode).expect("a stream mode");
    let mut items = Vec::new();
    let mut sink = |bytes: &[u8], at: Position| {
        items.push((String::from_utf8_lossy(bytes).into_owned(), at));
        Ok(())
    };
    for chunk in chunks {
        decoder.feed(chunk, &mut sink)?;
    }
    decoder.finish(&mut sink)?;
    Ok(items)
}

/// Decodes `stream` every way it can be split and checks each way gives the same answer.
fn decode_split(mode: StreamMode, stream: &[u8]) -> Result<Items, String> {
    let whole = decode(mode, &[stream]);
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(decode(mode, &[a, b]), whole, "split at byte {cut}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode(mode, &bytes), whole, "one byte at a time");
    whole
}

fn items(list: &[(&str, Position)]) -> Items {
    list.iter().map(|(s, at)| (s.to_string(), *at)).collect()
}

use Position::{Event, Frame, Line};

#[test]
fn ndjson_lines_skip_blanks_tolerate_crlf_and_keep_a_last_line_without_newline() {
    let stream = b"{\"a\":1}\r\n\n  \r\n{\"b\":2}\n{\"c\":3}";
    let got = decode_split(StreamMode::NdjsonLines, stream).unwrap();
    assert_eq!(got, items(&[("{\"a\":1}", Line(1)), ("{\"b\":2}", Line(4)), ("{\"c\":3}", Line(5))]));
    assert_eq!(decode_split(StreamMode::NdjsonLines, b"").unwrap(), items(&[]));
    // A lone `\r` inside a line is data, not a line end.
    assert_eq!(decode(StreamMode::NdjsonLines, &[b"a\rb\n"]).unwrap(), items(&[("a\rb", Line(1))]));
}

#[test]
fn a_line_over_the_limit_is_an_error_before_it_is_buffered_whole() {
    let mut decoder = Decoder::for_mode(StreamMode::NdjsonLines).unwrap();
    let mut sink = |_: &[u8], _: Position| Ok(());
    decoder.feed(b"{}\n", &mut sink).unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    let mut err = None;
    for _ in 0..17 {
        if let Err(e) = decoder.feed(&chunk, &mut sink) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err.unwrap(), "stdout line 2 is longer than the 16 MiB limit");
}

#[test]
fn sse_joins_data_lines_and_ignores_comments_and_other_fields() {
    let stream = b": a comment\r\nevent: progress\r\nid: 7\r\nretry: 100\r\ndata: {\"a\":\r\ndata:1}\r\n\r\n\
data: {\"b\":2}\n\n\nevent: only a name\n\ndata: {\"c\":3}";
    let got = decode_split(StreamMode::SseEvents, stream).unwrap();
    // The first event's data lines are joined with `\n`; the last event has no blank line
    // after it and still counts at the end of the stream; an event with no data is nothing.
    assert_eq!(got, items(&[("{\"a\":\n1}", Event(5)), ("{\"b\":2}", Event(8)), ("{\"c\":3}", Event(13))]));
}

#[test]
fn sse_takes_one_optional_space_and_a_bare_data_field() {
    let got = decode_split(StreamMode::SseEvents, b"data:  two spaces\ndata\n\n").unwrap();
    assert_eq!(got, items(&[(" two spaces\n", Event(1))]));
}

#[test]
fn sse_fails_on_a_line_that_is_no_field() {
    let err = decode_split(StreamMode::SseEvents, b"data: {}\n\nhello world\n").unwrap_err();
    assert_eq!(err, "stdout line 3 is not an SSE field (data:, event:, id:, retry: or a ':' comment): \"hello world\"");
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn frames_survive_any_split() {
    let stream = [frame(b"{\"a\":1}"), frame(b"[]"), frame("{\"é\":\"\\n\"}".as_bytes())].concat();
    let got = decode_split(StreamMode::LengthPrefixed, &stream).unwrap();
    assert_eq!(got, items(&[("{\"a\":1}", Frame(1)), ("[]", Frame(2)), ("{\"é\":\"\\n\"}", Frame(3))]));
}

#[test]
fn a_zero_length_or_oversized_frame_is_an_error() {
    let stream = [frame(b"{}"), vec![0, 0, 0, 0]].concat();
    assert_eq!(decode_split(StreamMode::LengthPrefixed, &stream).unwrap_err(), "stdout frame 2 has length 0");
    // The length alone condemns the frame: no payload needs to arrive.
    let over = (16 * 1024 * 1024 + 1u32).to_be_bytes();
    let err = decode(StreamMode::LengthPrefixed, &[&over]).unwrap_err();
    assert_eq!(err, "stdout frame 1 declares 16777217 bytes, over the 16 MiB limit");
    let limit = (16 * 1024 * 1024u32).to_be_bytes();
    assert_eq!(
        decode(StreamMode::LengthPrefixed, &[&limit]).unwrap_err(),
        "stdout ended inside frame 1 (0 of 16777216 bytes)"
    );
}

#[test]
fn a_stream_that_ends_inside_a_frame_is_an_error() {
    let mut stream = [frame(b"{}"), frame(b"{\"x\":1}")].concat();
    stream.truncate(stream.len() - 2);
    let err = decode_split(StreamMode::LengthPrefixed, &stream).unwrap_err();
    assert_eq!(err, "stdout ended inside frame 2 (5 of 7 bytes)");
    let err = decode(StreamMode::LengthPrefixed, &[&[0, 0]]).unwrap_err();
    assert_eq!(err, "stdout ended inside the length of frame 1 (2 of 4 bytes)");
}

#[test]
fn a_sink_error_stops_decoding() {
    let mut decoder = Decoder::for_mode(StreamMode::NdjsonLines).unwrap();
    let mut seen = 0;
    let mut sink = |_: &[u8], at: Position| {
        seen += 1;
        Err(format!("{at}: refused"))
    };
    assert_eq!(decoder.feed(b"a\nb\n", &mut sink).unwrap_err(), "stdout line 1: refused");
    assert_eq!(seen, 1);
}

#[test]
fn pending_bytes_are_reported() {
    let mut sink = |_: &[u8], _: Position| Ok(());
    for (mode, stream, pending) in [
        (StreamMode::NdjsonLines, &b"{}\n"[..], false),
        (StreamMode::NdjsonLines, b"{}\n{", true),
        (StreamMode::SseEvents, b"data: {}\n\n", false),
        (StreamMode::SseEvents, b"data: {}\n", true),
        (StreamMode::LengthPrefixed, &[0, 0, 0, 2, b'{', b'}'], false),
        (StreamMode::LengthPrefixed, &[0, 0, 0, 2, b'{'], true),
    ] {
        let mut decoder = Decoder::for_mode(mode).unwrap();
        decoder.feed(stream, &mut sink).unwrap();
        assert_eq!(decoder.has_pending(), pending, "{mode:?} {stream:?}");
    }
}

#[test]
fn previews_are_bounded_and_quoted() {
    assert_eq!(preview(b"hi \"x\""), "\"hi \\\"x\\\"\"");
    let long = preview(&[b'a'; 500]);
    assert_eq!(long.chars().count(), 120 + 3, "120 characters, the ellipsis and two quotes");
    assert_eq!(preview(b"\xff\xfe"), "\"\u{fffd}\u{fffd}\"");
}
