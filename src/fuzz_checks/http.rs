//! Checks of the HTTP layer: request heads (and what the connection loop
//! derives from a head before any handler runs) and the chunked decoder.

use super::{Input, pieces, split_points};
use crate::http::body::{BodyDecoder, BodyError, BodyStep, ChunkedDecoder};
use crate::http::request::{BodyFraming, ParseError, RequestHead, parse_head};
use crate::limits::{
    HEADER_COUNT_MAX, KEY_BYTES_MAX, REQUEST_HEAD_BYTES_MAX, TRAILER_BYTES_MAX, TRAILER_COUNT_MAX,
    URI_BYTES_MAX,
};
use crate::s3::router::{RouterConfig, parse_copy_source, route};

/// Target `http_head`: the input is a request as it arrives on a
/// connection (a head, then maybe a body and further requests).
///
/// - [`parse_head`] never panics; an accepted head is at most the input and
///   at most [`REQUEST_HEAD_BYTES_MAX`] long, ends with its blank line, has
///   at most [`HEADER_COUNT_MAX`] fields and a target of at most
///   [`URI_BYTES_MAX`], and parses the same on its own.
/// - The answer does not depend on how the bytes arrived: every proper
///   prefix (all of them for short inputs, a sample otherwise) answers
///   "incomplete" or exactly what the whole input answers, because the
///   connection loop parses its buffer again after each read.
/// - The accessors the connection loop calls (`framing`, `keep_alive`,
///   `expects_continue`, `host`) never panic, the body that follows is
///   decoded by the framing the head declares, and the router, the
///   `x-amz-copy-source` parser and the `Range` parser accept or refuse
///   the head without panicking, within their limits.
pub fn http_head(data: &[u8]) {
    let whole = parse_head(data);
    check_prefixes(data, &whole);
    let Ok(Some((head, head_len))) = whole else {
        return;
    };
    assert!(head_len <= data.len());
    assert!(head_len <= REQUEST_HEAD_BYTES_MAX);
    assert!(
        data[..head_len].ends_with(b"\n"),
        "a head ends with its blank line"
    );
    assert!(head.headers.len() <= HEADER_COUNT_MAX);
    assert!(head.target.len() <= URI_BYTES_MAX);
    assert!(head.version_minor <= 1);
    assert!(head.path.starts_with('/'), "path {:?}", head.path);
    assert_eq!(
        parse_head(&data[..head_len]),
        Ok(Some((head.clone(), head_len))),
        "a head parses the same without what follows it"
    );
    check_accessors(&head);
    if let Ok(framing) = head.framing() {
        decode_body(framing, &data[head_len..]);
    }
}

type HeadOutcome = Result<Option<(RequestHead, usize)>, ParseError>;

/// Every proper prefix of `data` (or a sample of them) answers "incomplete"
/// or the same as `data`.
fn check_prefixes(data: &[u8], whole: &HeadOutcome) {
    let check = |len: usize| {
        let answer = parse_head(&data[..len]);
        assert!(
            answer == Ok(None) || answer == *whole,
            "the first {len} bytes answer {answer:?}, the whole input {whole:?}"
        );
    };
    // A complete head is decided by its own bytes: look no further than it.
    let end = match whole {
        Ok(Some((_, head_len))) => *head_len,
        _ => data.len(),
    };
    if end <= 256 {
        (0..end).for_each(check);
    } else {
        let stride = end / 64;
        (0..end).step_by(stride).for_each(check);
        (end - 32..end).for_each(check);
    }
}

fn check_accessors(head: &RequestHead) {
    let _ = head.keep_alive();
    if head.expects_continue() {
        assert_eq!(head.version_minor, 1);
    }
    let host = head.host();
    if let Some(host) = host {
        assert!(!host.is_empty());
    }
    match head.framing() {
        Ok(BodyFraming::Chunked) => assert_eq!(head.version_minor, 1),
        Ok(BodyFraming::ContentLength(_) | BodyFraming::None) | Err(_) => {}
    }
    let config = RouterConfig {
        domains: vec!["s3.localhost".to_owned(), "localhost".to_owned()],
    };
    if let Ok(route) = route(
        &config,
        &head.method,
        host,
        &head.path,
        head.query.as_deref(),
        &head.headers,
    ) {
        if let Some(key) = &route.key {
            assert!(key.len() <= KEY_BYTES_MAX, "key of {} bytes", key.len());
        }
        let _ = route.endpoint.name();
        let _ = route.endpoint.permission();
    }
    if let Some(value) = head.headers.get("x-amz-copy-source")
        && let Ok(value) = value.to_str()
        && let Ok((bucket, key, _version)) = parse_copy_source(value)
    {
        assert!(!bucket.is_empty());
        assert!(key.len() <= KEY_BYTES_MAX);
    }
    if let Some(range) = head.headers.get(http::header::RANGE) {
        // Against a few object sizes: empty, tiny, and the largest.
        for size in [0, 1, 1000, crate::limits::OBJECT_BYTES_MAX] {
            if let Ok(Some((start, end))) = crate::s3::get::parse_range(range.as_bytes(), size) {
                assert!(start < end, "range {start}..{end}");
                assert!(end <= size, "range {start}..{end} of {size} bytes");
            }
        }
    }
    let conditions = crate::s3::conditions::Preconditions::from_headers(&head.headers);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let _ = conditions.evaluate("\"0123456789abcdef0123456789abcdef\"", time, time);
}

/// Decodes what follows a head with the decoder its framing chooses, as
/// the connection loop does, checking the step contract.
fn decode_body(framing: BodyFraming, mut rest: &[u8]) {
    let mut decoder = BodyDecoder::new(framing);
    loop {
        let Ok((consumed, step)) = decoder.step(rest) else {
            return;
        };
        assert!(consumed <= rest.len());
        match step {
            BodyStep::Data { start, end } => {
                assert!(
                    start < end && end == consumed,
                    "{start}..{end} of {consumed}"
                );
            }
            BodyStep::NeedMore => {
                assert_eq!(consumed, rest.len());
                return;
            }
            BodyStep::End => {
                assert!(decoder.is_finished());
                return;
            }
        }
        rest = &rest[consumed..];
    }
}

/// What decoding a whole chunked body gave.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    /// The offset in the input where the body ended (`End`), if it did.
    end: Option<usize>,
    trailers: Vec<(String, String)>,
    error: Option<BodyError>,
}

/// Feeds `pieces` in order to a fresh chunked decoder, as the connection
/// loop would (each piece is what one read returned), checking the `step`
/// contract of `http::body` on the way.
fn decode_chunked(pieces: &[&[u8]]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut decoded = Decoded {
        data: Vec::new(),
        end: None,
        trailers: Vec::new(),
        error: None,
    };
    let mut piece_start = 0;
    'pieces: for piece in pieces {
        let mut offset = 0;
        loop {
            let (consumed, step) = match decoder.step(&piece[offset..]) {
                Ok(answer) => answer,
                Err(error) => {
                    decoded.error = Some(error);
                    break 'pieces;
                }
            };
            assert!(offset + consumed <= piece.len());
            match step {
                BodyStep::Data { start, end } => {
                    assert!(
                        start < end && end == consumed,
                        "{start}..{end} of {consumed}"
                    );
                    decoded
                        .data
                        .extend_from_slice(&piece[offset + start..offset + end]);
                }
                BodyStep::NeedMore => {
                    assert_eq!(
                        offset + consumed,
                        piece.len(),
                        "NeedMore consumes everything"
                    );
                    break;
                }
                BodyStep::End => {
                    assert!(decoder.is_finished());
                    decoded.end = Some(piece_start + offset + consumed);
                    // Every later step is (0, End), whatever follows.
                    assert_eq!(decoder.step(b"0\r\n\r\n"), Ok((0, BodyStep::End)));
                    break 'pieces;
                }
            }
            offset += consumed;
        }
        piece_start += piece.len();
    }
    decoded.trailers = decoder.trailers().to_vec();
    assert!(decoded.trailers.len() <= TRAILER_COUNT_MAX);
    let trailer_bytes: usize = decoded
        .trailers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 3)
        .sum();
    assert!(trailer_bytes <= TRAILER_BYTES_MAX);
    for (name, value) in &decoded.trailers {
        assert!(!name.is_empty());
        assert_eq!(*name, name.to_ascii_lowercase());
        assert_eq!(value.trim_matches([' ', '\t']), value);
    }
    decoded
}

/// Target `chunked`: `Transfer-Encoding: chunked` bodies
/// (`http::body::ChunkedDecoder`). The input is a count of cut points (the
/// first byte, up to 15), the cut points (two bytes each), then the body.
///
/// The decoder must give exactly the same data, trailers, end offset and
/// error whether the body is fed whole, cut at the fuzzer's points, or one
/// byte at a time (for short bodies): a network can split a body anywhere.
/// It never panics, honours the step contract, and keeps the trailer
/// limits.
pub fn chunked(data: &[u8]) {
    let mut input = Input::new(data);
    let count = usize::from(input.u8() % 16);
    let points = {
        let mut header = input.clone();
        let _ = header.take(count * 2);
        let body_len = header.rest().len();
        split_points(&mut input, count, body_len)
    };
    let body = input.rest();
    let whole = decode_chunked(&[body]);
    let cut = decode_chunked(&pieces(body, &points));
    assert_eq!(whole, cut, "cut at {points:?}");
    if body.len() <= 512 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(whole, decode_chunked(&bytes), "fed one byte at a time");
    }
}
