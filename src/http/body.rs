//! Request-body decoders: where the body's bytes are, and where it ends.
//!
//! This module owns the HTTP/1.1 message-body framing of a request (RFC
//! 9112 §6-7): a body delimited by `Content-Length`, or by the chunked
//! transfer coding. It does not own what the body means: aws-chunked
//! signatures, checksums and payload hashes are layered on the bytes these
//! decoders yield, by `auth/`.
//!
//! The decoders are sans-IO, like hyper's `proto/h1/decode.rs` but without
//! its reader: the connection loop hands [`BodyDecoder::step`] the bytes it
//! has buffered, and `step` answers with one [`BodyStep`] and how many of
//! those bytes it consumed. Body bytes are reported as a range of the input,
//! never copied, so the caller moves them straight from its read buffer to
//! wherever they go; memory does not grow with the body. Only framing is
//! kept in the decoder: the current chunk's remaining size and, at the end,
//! the trailer fields (bounded by [`TRAILER_BYTES_MAX`]).
//!
//! ## The `step` contract
//!
//! `step(input)` returns `(consumed, step)`, where `input` is every byte the
//! caller holds that no earlier step consumed:
//!
//! - [`BodyStep::Data`]: `input[start..end]` is body data, never empty;
//!   `consumed == end` (the bytes before `start` were framing). Use the
//!   data, drop `consumed` bytes, and step again.
//! - [`BodyStep::NeedMore`]: every byte was consumed (`consumed ==
//!   input.len()`): a partial chunk-size line is remembered in the decoder,
//!   so the caller never has to keep one. Read more, and step again.
//! - [`BodyStep::End`]: the body is complete; `input[consumed..]` belongs to
//!   the next request on the connection. Every later step returns
//!   `(0, End)`.
//!
//! An error means the connection's byte stream is at an unknown position:
//! answer with [`BodyError::status`] and [`BodyError::s3_code`], then close.
//! If the peer closes the connection before `End`, that is
//! [`BodyError::Incomplete`].
//!
//! ## Strictness
//!
//! Every line in the chunked framing must end with CRLF. RFC 9112 §2.2
//! allows a recipient to accept a bare LF, but a bare LF that one hop
//! accepts and another refuses is how chunked bodies are smuggled, so, as
//! hyper does, a bare LF or a bare CR anywhere in the framing is an error,
//! and so is anything but CRLF right after a chunk's data. Whitespace is
//! tolerated after the chunk size (as hyper does, for old clients) and chunk
//! extensions are skipped unread.

use std::fmt;

use http::StatusCode;

use super::request::BodyFraming;
use crate::limits::{CHUNK_BYTES_MAX, CHUNK_LINE_BYTES_MAX, TRAILER_BYTES_MAX, TRAILER_COUNT_MAX};

// The chunk-size parser appends a hex digit to a size of at most
// CHUNK_BYTES_MAX before it compares with the limit: that must not overflow.
const _: () = assert!(CHUNK_BYTES_MAX <= (u64::MAX - 15) / 16);

/// One answer of a decoder's `step`; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// Body bytes at `input[start..end]`, with `start < end`.
    Data { start: usize, end: usize },
    /// All input was consumed; more is needed.
    NeedMore,
    /// The body is complete.
    End,
}

/// Why a request body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The connection ended before the body did. The decoders never see the
    /// end of the connection, so the connection loop reports this one.
    Incomplete,
    /// A chunk-size line does not start with a hex digit, or has something
    /// other than whitespace, `;` or CRLF after its digits.
    ChunkSize,
    /// A chunk is larger than [`CHUNK_BYTES_MAX`].
    ChunkTooLarge,
    /// A chunk-size line has a bare CR or LF, or a control character in its
    /// extensions.
    ChunkLine,
    /// A chunk-size or trailer line is longer than
    /// [`CHUNK_LINE_BYTES_MAX`].
    LineTooLong,
    /// Something other than CRLF follows a chunk's data: the chunk size
    /// did not match the data sent.
    ChunkDataEnd,
    /// A trailer line is malformed: no colon, a bad name, a control
    /// character, obsolete line folding, a bare CR or LF, or a value that
    /// is not UTF-8.
    Trailer,
    /// The trailer section is longer than [`TRAILER_BYTES_MAX`].
    TrailerTooLarge,
    /// More than [`TRAILER_COUNT_MAX`] trailer fields.
    TooManyTrailers,
}

impl From<BodyError> for crate::error::S3Error {
    fn from(error: BodyError) -> Self {
        let (code, message) = error.s3_error();
        crate::error::S3Error::named(code, message)
    }
}

impl BodyError {
    /// The S3 error code and message of the error response, for
    /// `error.rs`, which derives the HTTP status from the code.
    #[must_use]
    pub fn s3_error(self) -> (&'static str, &'static str) {
        (self.s3_code(), self.message())
    }

    /// The HTTP status of the error response: every body error is the
    /// client's, 400.
    #[must_use]
    pub fn status(self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// The S3 error code of the error response, as AWS S3 names it.
    ///
    /// - `IncompleteBody`: "You did not provide the number of bytes
    ///   specified by the Content-Length HTTP header."
    /// - `EntityTooLarge`: a chunk larger than [`CHUNK_BYTES_MAX`] is larger
    ///   than any object can be.
    /// - `InvalidRequest`: malformed chunked framing. S3 has no code for
    ///   broken HTTP syntax; this is its generic 400.
    #[must_use]
    pub fn s3_code(self) -> &'static str {
        match self {
            Self::Incomplete => "IncompleteBody",
            Self::ChunkTooLarge => "EntityTooLarge",
            Self::ChunkSize
            | Self::ChunkLine
            | Self::LineTooLong
            | Self::ChunkDataEnd
            | Self::Trailer
            | Self::TrailerTooLarge
            | Self::TooManyTrailers => "InvalidRequest",
        }
    }

    /// The message of the error response, in AWS's words where AWS has
    /// an error for the case.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Incomplete => {
                "You did not provide the number of bytes specified by the Content-Length HTTP header."
            }
            Self::ChunkSize => "A chunk size in the chunked request body is malformed.",
            Self::ChunkTooLarge => "Your proposed upload exceeds the maximum allowed size.",
            Self::ChunkLine => "A chunk-size line in the chunked request body is malformed.",
            Self::LineTooLong => {
                "A line in the chunked request body exceeds the maximum allowed length."
            }
            Self::ChunkDataEnd => "A chunk in the chunked request body does not match its size.",
            Self::Trailer => "A trailer field in the chunked request body is malformed.",
            Self::TrailerTooLarge => {
                "Your request trailer section exceeds the maximum allowed size."
            }
            Self::TooManyTrailers => "Your request has more trailer fields than allowed.",
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for BodyError {}

/// A body of `Content-Length` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentLengthDecoder {
    remaining: u64,
}

impl ContentLengthDecoder {
    #[must_use]
    pub fn new(len: u64) -> Self {
        Self { remaining: len }
    }

    /// Bytes of the body not yet returned.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// One step; see the module documentation. It cannot fail: any byte can
    /// be body data, and a body cut short is only noticed at the end of the
    /// connection ([`BodyError::Incomplete`]).
    pub fn step(&mut self, input: &[u8]) -> (usize, BodyStep) {
        if self.remaining == 0 {
            return (0, BodyStep::End);
        }
        if input.is_empty() {
            return (0, BodyStep::NeedMore);
        }
        let len = usize::try_from(self.remaining)
            .map_or(input.len(), |remaining| remaining.min(input.len()));
        self.remaining -= len as u64;
        (len, BodyStep::Data { start: 0, end: len })
    }
}

/// Where a [`ChunkedDecoder`] is in the chunked grammar:
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// In the hex digits of a chunk size.
    Size,
    /// In whitespace after the chunk size.
    SizeWhitespace,
    /// In chunk extensions, which are skipped up to the CR.
    Extension,
    /// After the CR of a chunk-size line: LF must come.
    SizeLf,
    /// In chunk data, `size` bytes of it left.
    Data,
    /// After chunk data: CR must come.
    DataCr,
    /// After chunk data and CR: LF must come.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// In a trailer field line.
    Trailer,
    /// After the CR of a trailer field line: LF must come.
    TrailerLf,
    /// After the CR of the final empty line: LF must come.
    EndLf,
    /// The body is complete.
    End,
}

/// A body in the chunked transfer coding (RFC 9112 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkedState,
    /// The chunk size being parsed, then the data left in the chunk.
    size: u64,
    /// Bytes of the current chunk-size or trailer line so far, CRLF
    /// included, checked against [`CHUNK_LINE_BYTES_MAX`].
    line_len: usize,
    /// Bytes of the trailer section so far, the final CRLF included,
    /// checked against [`TRAILER_BYTES_MAX`].
    trailer_section_len: usize,
    /// The current trailer line without its CRLF. Trailers are the one
    /// part of the framing a line at a time could not parse in place, and
    /// they are small and rare.
    trailer_line: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: ChunkedState::SizeStart,
            size: 0,
            line_len: 0,
            trailer_section_len: 0,
            trailer_line: Vec::new(),
            trailers: Vec::new(),
        }
    }

    /// The trailer fields, in the order sent, once the body has ended: the
    /// name in lowercase (field names are case-insensitive, and this is how
    /// `http::HeaderName` stores them too), the value with surrounding
    /// whitespace removed. They are kept apart from the header section on
    /// purpose: RFC 9110 §6.5.1 forbids merging trailers into headers
    /// unless each field is known to be safe there, so the caller picks the
    /// ones it expects (aws-chunked checksums and trailer signatures).
    #[must_use]
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state == ChunkedState::End
    }

    /// One step; see the module documentation.
    ///
    /// # Errors
    ///
    /// A [`BodyError`] when the chunked framing is malformed or passes a
    /// limit. The decoder must not be stepped again after an error.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, BodyStep), BodyError> {
        let mut position = 0;
        loop {
            match self.state {
                ChunkedState::End => return Ok((position, BodyStep::End)),
                ChunkedState::Data => {
                    let available = input.len() - position;
                    if available == 0 {
                        return Ok((position, BodyStep::NeedMore));
                    }
                    let len =
                        usize::try_from(self.size).map_or(available, |size| size.min(available));
                    self.size -= len as u64;
                    if self.size == 0 {
                        self.state = ChunkedState::DataCr;
                    }
                    let end = position + len;
                    return Ok((
                        end,
                        BodyStep::Data {
                            start: position,
                            end,
                        },
                    ));
                }
                ChunkedState::Extension | ChunkedState::Trailer
                    if input.get(position).is_some_and(|&byte| is_line_text(byte)) =>
                {
                    let taken = self.take_line_text(&input[position..]);
                    position += taken;
                    if taken == 0 {
                        // At a limit: let advance() refuse the byte.
                        let byte = input[position];
                        position += 1;
                        self.advance(byte)?;
                    }
                }
                _ => {
                    let Some(&byte) = input.get(position) else {
                        return Ok((position, BodyStep::NeedMore));
                    };
                    position += 1;
                    self.advance(byte)?;
                }
            }
        }
    }

    /// Takes the run of ordinary bytes at the start of `input` inside an
    /// extension or a trailer line in one go, rather than byte by byte,
    /// and returns its length. The run stops short of any limit, so the
    /// byte that crosses one goes through [`Self::advance`] and fails
    /// there exactly as it would have byte by byte.
    fn take_line_text(&mut self, input: &[u8]) -> usize {
        let mut len = input
            .iter()
            .position(|&byte| !is_line_text(byte))
            .unwrap_or(input.len());
        len = len.min(CHUNK_LINE_BYTES_MAX - self.line_len);
        if self.state == ChunkedState::Trailer {
            len = len.min(TRAILER_BYTES_MAX - self.trailer_section_len);
            self.trailer_section_len += len;
            self.trailer_line.extend_from_slice(&input[..len]);
        }
        self.line_len += len;
        len
    }

    /// Moves the state machine over one framing byte.
    fn advance(&mut self, byte: u8) -> Result<(), BodyError> {
        use ChunkedState as S;
        match self.state {
            S::SizeStart => {
                self.line_len = 0;
                self.count_line_byte()?;
                self.size = u64::from(hex_digit(byte).ok_or(BodyError::ChunkSize)?);
                self.state = S::Size;
            }
            S::Size => {
                self.count_line_byte()?;
                if let Some(digit) = hex_digit(byte) {
                    // size <= CHUNK_BYTES_MAX before this digit, so this
                    // cannot overflow (see the assertion at the top); a
                    // size past the limit fails at once, however many
                    // digits are still to come.
                    self.size = self.size * 16 + u64::from(digit);
                    if self.size > CHUNK_BYTES_MAX {
                        return Err(BodyError::ChunkTooLarge);
                    }
                } else {
                    self.state = after_size(byte).ok_or(BodyError::ChunkSize)?;
                }
            }
            S::SizeWhitespace => {
                self.count_line_byte()?;
                self.state = after_size(byte).ok_or(BodyError::ChunkSize)?;
            }
            S::Extension => {
                self.count_line_byte()?;
                if byte == b'\r' {
                    self.state = S::SizeLf;
                } else if !is_line_text(byte) {
                    return Err(BodyError::ChunkLine);
                }
            }
            S::SizeLf => {
                self.count_line_byte()?;
                if byte != b'\n' {
                    return Err(BodyError::ChunkLine);
                }
                self.state = if self.size == 0 {
                    S::TrailerStart
                } else {
                    S::Data
                };
            }
            S::DataCr => {
                if byte != b'\r' {
                    return Err(BodyError::ChunkDataEnd);
                }
                self.state = S::DataLf;
            }
            S::DataLf => {
                if byte != b'\n' {
                    return Err(BodyError::ChunkDataEnd);
                }
                self.state = S::SizeStart;
            }
            S::TrailerStart => {
                self.line_len = 0;
                self.count_trailer_byte()?;
                match byte {
                    b'\r' => self.state = S::EndLf,
                    // Obsolete line folding, or a bare LF.
                    b' ' | b'\t' | b'\n' => return Err(BodyError::Trailer),
                    _ => {
                        if self.trailers.len() == TRAILER_COUNT_MAX {
                            return Err(BodyError::TooManyTrailers);
                        }
                        self.trailer_line.clear();
                        self.push_trailer_byte(byte)?;
                        self.state = S::Trailer;
                    }
                }
            }
            S::Trailer => {
                self.count_trailer_byte()?;
                if byte == b'\r' {
                    self.state = S::TrailerLf;
                } else {
                    self.push_trailer_byte(byte)?;
                }
            }
            S::TrailerLf => {
                self.count_trailer_byte()?;
                if byte != b'\n' {
                    return Err(BodyError::Trailer);
                }
                let field = parse_trailer_line(&self.trailer_line)?;
                self.trailers.push(field);
                self.state = S::TrailerStart;
            }
            S::EndLf => {
                self.count_trailer_byte()?;
                if byte != b'\n' {
                    return Err(BodyError::Trailer);
                }
                self.trailer_line = Vec::new();
                self.state = S::End;
            }
            S::Data | S::End => unreachable!("step() does not advance over data or past the end"),
        }
        Ok(())
    }

    fn count_line_byte(&mut self) -> Result<(), BodyError> {
        self.line_len += 1;
        if self.line_len > CHUNK_LINE_BYTES_MAX {
            return Err(BodyError::LineTooLong);
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self) -> Result<(), BodyError> {
        self.trailer_section_len += 1;
        if self.trailer_section_len > TRAILER_BYTES_MAX {
            return Err(BodyError::TrailerTooLarge);
        }
        self.count_line_byte()
    }

    /// Keeps one byte of a trailer line.
    fn push_trailer_byte(&mut self, byte: u8) -> Result<(), BodyError> {
        if !is_line_text(byte) {
            return Err(BodyError::Trailer);
        }
        self.trailer_line.push(byte);
        Ok(())
    }
}

/// Whether `byte` may appear inside a chunk extension or a trailer line:
/// anything but control characters (HTAB excepted), as in header values. A
/// bare CR or LF is one of the refused ones.
fn is_line_text(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The state after a non-digit byte following a chunk size, or `None` when
/// that byte cannot come there.
fn after_size(byte: u8) -> Option<ChunkedState> {
    match byte {
        b' ' | b'\t' => Some(ChunkedState::SizeWhitespace),
        b';' => Some(ChunkedState::Extension),
        b'\r' => Some(ChunkedState::SizeLf),
        _ => None,
    }
}

/// Splits `name: value` into a lowercase name and a trimmed value.
fn parse_trailer_line(line: &[u8]) -> Result<(String, String), BodyError> {
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(BodyError::Trailer)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // The name is a token (RFC 9110 §5.1), which is also what http's
    // HeaderName accepts; whitespace before the colon is not.
    let name = http::HeaderName::from_bytes(name).map_err(|_| BodyError::Trailer)?;
    let value = std::str::from_utf8(value).map_err(|_| BodyError::Trailer)?;
    Ok((
        name.as_str().to_owned(),
        value.trim_matches([' ', '\t']).to_owned(),
    ))
}

/// The decoder for a request, chosen by its [`BodyFraming`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyDecoder {
    /// No body: the first step is `End`.
    Empty,
    Length(ContentLengthDecoder),
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    #[must_use]
    pub fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::None => Self::Empty,
            BodyFraming::ContentLength(len) => Self::Length(ContentLengthDecoder::new(len)),
            BodyFraming::Chunked => Self::Chunked(ChunkedDecoder::new()),
        }
    }

    /// A decoder for a chunked body.
    #[must_use]
    pub fn chunked() -> Self {
        Self::Chunked(ChunkedDecoder::new())
    }

    /// One step; see the module documentation.
    ///
    /// # Errors
    ///
    /// See [`ChunkedDecoder::step`]; the other framings cannot fail here.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, BodyStep), BodyError> {
        match self {
            Self::Empty => Ok((0, BodyStep::End)),
            Self::Length(decoder) => Ok(decoder.step(input)),
            Self::Chunked(decoder) => decoder.step(input),
        }
    }

    /// Whether the body has ended: the last step returned, or the next one
    /// will return, [`BodyStep::End`] without needing input.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Length(decoder) => decoder.remaining() == 0,
            Self::Chunked(decoder) => decoder.is_finished(),
        }
    }

    /// The trailer fields of a chunked body (empty for other framings); see
    /// [`ChunkedDecoder::trailers`].
    #[must_use]
    pub fn trailers(&self) -> &[(String, String)] {
        match self {
            Self::Chunked(decoder) => decoder.trailers(),
            Self::Empty | Self::Length(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fully decoded body: its data, its trailers, and how many input
    /// bytes the body took.
    #[derive(Debug, PartialEq, Eq)]
    struct Decoded {
        data: Vec<u8>,
        trailers: Vec<(String, String)>,
        body_len: usize,
    }

    /// Feeds `pieces` the way the connection loop does, checking the `step`
    /// contract on every answer. `Ok(None)` means the body had not ended
    /// when the input ran out.
    fn feed(framing: BodyFraming, pieces: &[&[u8]]) -> Result<Option<Decoded>, BodyError> {
        let mut decoder = BodyDecoder::new(framing);
        let mut pending: Vec<u8> = Vec::new();
        let mut data = Vec::new();
        let mut body_len = 0;
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                let (consumed, step) = decoder.step(&pending)?;
                assert!(consumed <= pending.len());
                body_len += consumed;
                match step {
                    BodyStep::Data { start, end } => {
                        assert!(start < end, "empty data");
                        assert_eq!(end, consumed);
                        data.extend_from_slice(&pending[start..end]);
                        pending.drain(..consumed);
                    }
                    BodyStep::NeedMore => {
                        assert_eq!(consumed, pending.len(), "NeedMore left input");
                        assert!(!decoder.is_finished());
                        pending.clear();
                        break;
                    }
                    BodyStep::End => {
                        assert!(decoder.is_finished());
                        // Once ended, always ended, and nothing more is taken.
                        assert_eq!(decoder.step(&pending[consumed..]), Ok((0, BodyStep::End)));
                        let trailers = decoder.trailers().to_vec();
                        return Ok(Some(Decoded {
                            data,
                            trailers,
                            body_len,
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Goal: the decoded body depends only on the bytes, never on how they
    /// were split into reads. Method (hyper's shotgun tests): decode the
    /// input whole, split in two at every byte offset, and one byte at a
    /// time, and require the same answer each time. Returns that answer.
    fn shotgun(framing: BodyFraming, input: &[u8]) -> Result<Option<Decoded>, BodyError> {
        let whole = feed(framing, &[input]);
        for split in 0..=input.len() {
            let (first, second) = input.split_at(split);
            assert_eq!(feed(framing, &[first, second]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(framing, &bytes), whole, "one byte at a time");
        whole
    }

    fn chunked(input: &[u8]) -> Decoded {
        shotgun(BodyFraming::Chunked, input)
            .expect("valid body")
            .expect("complete body")
    }

    fn chunked_error(input: &[u8]) -> BodyError {
        shotgun(BodyFraming::Chunked, input).expect_err("invalid body")
    }

    #[test]
    fn empty_body() {
        let decoded = shotgun(BodyFraming::None, b"GET / HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            decoded,
            Decoded {
                data: vec![],
                trailers: vec![],
                body_len: 0
            }
        );
    }

    #[test]
    fn content_length_body() {
        let input = b"hello worldGET / HTTP/1.1\r\n\r\n";
        let decoded = shotgun(BodyFraming::ContentLength(11), input)
            .unwrap()
            .unwrap();
        assert_eq!(decoded.data, b"hello world");
        assert_eq!(decoded.body_len, 11);
        let decoded = shotgun(BodyFraming::ContentLength(0), input)
            .unwrap()
            .unwrap();
        assert_eq!(decoded.body_len, 0);
        assert_eq!(
            shotgun(BodyFraming::ContentLength(12), b"hello world"),
            Ok(None)
        );
    }

    #[test]
    fn content_length_data_is_a_range_of_the_input() {
        let mut decoder = ContentLengthDecoder::new(5);
        assert_eq!(
            decoder.step(b"abc"),
            (3, BodyStep::Data { start: 0, end: 3 })
        );
        assert_eq!(decoder.step(b""), (0, BodyStep::NeedMore));
        assert_eq!(
            decoder.step(b"defgh"),
            (2, BodyStep::Data { start: 0, end: 2 })
        );
        assert_eq!(decoder.step(b"fgh"), (0, BodyStep::End));
    }

    #[test]
    fn chunked_body() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let decoded = chunked(input);
        assert_eq!(decoded.data, b"hello world");
        assert!(decoded.trailers.is_empty());
        assert_eq!(
            decoded.body_len,
            input.len() - b"GET / HTTP/1.1\r\n\r\n".len()
        );
    }

    #[test]
    fn chunked_data_is_a_range_of_the_input() {
        let mut decoder = ChunkedDecoder::new();
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            decoder.step(input),
            Ok((6, BodyStep::Data { start: 3, end: 6 }))
        );
        assert_eq!(decoder.step(&input[6..]), Ok((7, BodyStep::End)));
    }

    #[test]
    fn chunked_sizes_and_extensions() {
        let input = b"A\r\n0123456789\r\n\
                      0a;name=value;other\r\n0123456789\r\n\
                      1 \t;\tx=\"quoted; \\\" string\"\r\n!\r\n\
                      00000000000000000000000000002\r\n!!\r\n\
                      0000;last\r\n\r\n";
        assert_eq!(chunked(input).data, b"01234567890123456789!!!");
    }

    #[test]
    fn chunked_trailers() {
        let input = b"3\r\nabc\r\n0\r\n\
                      x-amz-checksum-crc32: sOO8/Q==\r\n\
                      X-Amz-Trailer-Signature:\t63bddb24 \r\n\
                      empty:\r\n\r\n";
        let decoded = chunked(input);
        assert_eq!(decoded.data, b"abc");
        let expected = [
            ("x-amz-checksum-crc32", "sOO8/Q=="),
            ("x-amz-trailer-signature", "63bddb24"),
            ("empty", ""),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(decoded.trailers, expected);
    }

    #[test]
    fn chunked_incomplete_asks_for_more() {
        for input in [
            &b""[..],
            b"5",
            b"5\r\nhel",
            b"5\r\nhello\r",
            b"0\r\n",
            b"0\r\nx: y\r\n",
            b"0\r\n\r",
        ] {
            assert_eq!(shotgun(BodyFraming::Chunked, input), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn chunked_bad_size() {
        for input in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"1x\r\n",
            b"1 2\r\n",
            b" 1\r\n",
            b";\r\n",
            b"0x1\r\n",
        ] {
            assert_eq!(chunked_error(input), BodyError::ChunkSize, "{input:?}");
        }
    }

    #[test]
    fn chunked_bare_cr_and_lf() {
        assert_eq!(chunked_error(b"1\nx\r\n0\r\n\r\n"), BodyError::ChunkSize);
        assert_eq!(chunked_error(b"1\rx\r\n0\r\n\r\n"), BodyError::ChunkLine);
        assert_eq!(
            chunked_error(b"1;ext\nx\r\n0\r\n\r\n"),
            BodyError::ChunkLine
        );
        assert_eq!(
            chunked_error(b"1;e\rx\r\nx\r\n0\r\n\r\n"),
            BodyError::ChunkLine
        );
        assert_eq!(
            chunked_error(b"1;e\0x\r\nx\r\n0\r\n\r\n"),
            BodyError::ChunkLine
        );
        assert_eq!(chunked_error(b"0\r\n\n"), BodyError::Trailer);
        assert_eq!(chunked_error(b"0\r\n\rx"), BodyError::Trailer);
        assert_eq!(
            chunked_error(b"0\r\na: b\nc: d\r\n\r\n"),
            BodyError::Trailer
        );
        assert_eq!(
            chunked_error(b"0\r\na: b\rc: d\r\n\r\n"),
            BodyError::Trailer
        );
    }

    #[test]
    fn chunked_data_must_end_with_crlf() {
        // The size says 3 but 4 bytes were sent, or 2.
        assert_eq!(
            chunked_error(b"3\r\nabcd\r\n0\r\n\r\n"),
            BodyError::ChunkDataEnd
        );
        assert_eq!(
            chunked_error(b"3\r\nab\r\n0\r\n\r\n"),
            BodyError::ChunkDataEnd
        );
        assert_eq!(
            chunked_error(b"3\r\nabc\n0\r\n\r\n"),
            BodyError::ChunkDataEnd
        );
        assert_eq!(
            chunked_error(b"3\r\nabc\r0\r\n\r\n"),
            BodyError::ChunkDataEnd
        );
    }

    #[test]
    fn chunked_bad_trailers() {
        for trailer in [
            &b"no colon"[..],
            b" folded: x",
            b"\tx: y",
            b"bad name: x",
            b": x",
            b"x: a\x01b",
            b"x: \xff",
        ] {
            let mut input = b"0\r\n".to_vec();
            input.extend_from_slice(trailer);
            input.extend_from_slice(b"\r\n\r\n");
            assert_eq!(chunked_error(&input), BodyError::Trailer, "{trailer:?}");
        }
    }

    /// A chunk-size line of exactly `len` bytes, CRLF included, for a
    /// 1-byte chunk, padded with an extension.
    fn chunk_line_of_len(len: usize) -> Vec<u8> {
        let mut input = b"1;".to_vec();
        input.resize(len - 2, b'e');
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        input
    }

    #[test]
    fn chunk_line_limit() {
        assert_eq!(chunked(&chunk_line_of_len(CHUNK_LINE_BYTES_MAX)).data, b"x");
        let input = chunk_line_of_len(CHUNK_LINE_BYTES_MAX + 1);
        assert_eq!(chunked_error(&input), BodyError::LineTooLong);
    }

    #[test]
    fn chunk_line_limit_holds_for_leading_zeros() {
        let mut input = vec![b'0'; CHUNK_LINE_BYTES_MAX - 3];
        input.extend_from_slice(b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(chunked(&input).data, b"x");
        input.insert(0, b'0');
        assert_eq!(chunked_error(&input), BodyError::LineTooLong);
    }

    #[test]
    fn chunk_size_limit() {
        let at_limit = format!("{CHUNK_BYTES_MAX:x}\r\nsome data");
        let decoded = shotgun(BodyFraming::Chunked, at_limit.as_bytes());
        assert_eq!(decoded, Ok(None));
        let past_limit = format!("{:x}\r\nsome data", CHUNK_BYTES_MAX + 1);
        assert_eq!(
            chunked_error(past_limit.as_bytes()),
            BodyError::ChunkTooLarge
        );
    }

    #[test]
    fn chunk_size_does_not_overflow() {
        // 2^64 + 1, and longer: rejected as soon as they pass the limit.
        assert_eq!(
            chunked_error(b"10000000000000001\r\n"),
            BodyError::ChunkTooLarge
        );
        let long = "f".repeat(CHUNK_LINE_BYTES_MAX - 2);
        assert_eq!(
            chunked_error(format!("{long}\r\n").as_bytes()),
            BodyError::ChunkTooLarge
        );
    }

    /// A body whose trailer section is exactly `section_len` bytes (final
    /// CRLF included) in `count` fields of about the same length.
    fn body_with_trailers(count: usize, section_len: usize) -> Vec<u8> {
        assert!(count > 0);
        let fields_len = section_len - 2;
        let mut input = b"1\r\nx\r\n0\r\n".to_vec();
        for index in 0..count {
            // Spread the bytes evenly; the first lines take the remainder.
            let line_len = fields_len / count + usize::from(index < fields_len % count);
            let prefix = format!("t{index}:");
            assert!(line_len >= prefix.len() + 2);
            input.extend_from_slice(prefix.as_bytes());
            input.resize(input.len() + line_len - prefix.len() - 2, b'v');
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"\r\n");
        input
    }

    #[test]
    fn trailer_line_limit() {
        let decoded = chunked(&body_with_trailers(1, CHUNK_LINE_BYTES_MAX + 2));
        assert_eq!(
            decoded.trailers[0].1.len(),
            CHUNK_LINE_BYTES_MAX - "t0:\r\n".len()
        );
        let input = body_with_trailers(1, CHUNK_LINE_BYTES_MAX + 3);
        assert_eq!(chunked_error(&input), BodyError::LineTooLong);
    }

    #[test]
    fn trailer_bytes_limit() {
        // More than one line's worth, so the section limit is what bites.
        let count = TRAILER_BYTES_MAX / CHUNK_LINE_BYTES_MAX + 1;
        assert!(count <= TRAILER_COUNT_MAX);
        let decoded = chunked(&body_with_trailers(count, TRAILER_BYTES_MAX));
        assert_eq!(decoded.trailers.len(), count);
        let input = body_with_trailers(count, TRAILER_BYTES_MAX + 1);
        assert_eq!(chunked_error(&input), BodyError::TrailerTooLarge);
    }

    #[test]
    fn trailer_count_limit() {
        let decoded = chunked(&body_with_trailers(
            TRAILER_COUNT_MAX,
            TRAILER_COUNT_MAX * 8 + 2,
        ));
        assert_eq!(decoded.trailers.len(), TRAILER_COUNT_MAX);
        let input = body_with_trailers(TRAILER_COUNT_MAX + 1, (TRAILER_COUNT_MAX + 1) * 8 + 2);
        assert_eq!(chunked_error(&input), BodyError::TooManyTrailers);
    }

    #[test]
    fn large_chunk_is_returned_in_pieces_without_copying() {
        // Goal: a chunk larger than the read buffer streams through: each
        // step returns what is there, with the data range in place.
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let (consumed, step) = decoder.step(b"100000\r\n").unwrap();
        assert_eq!((consumed, step), (8, BodyStep::NeedMore));
        let buffer = vec![7_u8; 64 * 1024];
        let mut total = 0;
        while total < 0x10_0000 {
            let (consumed, step) = decoder.step(&buffer).unwrap();
            assert_eq!(
                step,
                BodyStep::Data {
                    start: 0,
                    end: buffer.len()
                }
            );
            assert_eq!(consumed, buffer.len());
            total += consumed;
        }
        assert_eq!(decoder.step(b"\r\n0\r\n\r\n"), Ok((7, BodyStep::End)));
    }

    #[test]
    fn s3_error_mapping() {
        let cases = [
            (BodyError::Incomplete, "IncompleteBody"),
            (BodyError::ChunkSize, "InvalidRequest"),
            (BodyError::ChunkTooLarge, "EntityTooLarge"),
            (BodyError::ChunkLine, "InvalidRequest"),
            (BodyError::LineTooLong, "InvalidRequest"),
            (BodyError::ChunkDataEnd, "InvalidRequest"),
            (BodyError::Trailer, "InvalidRequest"),
            (BodyError::TrailerTooLarge, "InvalidRequest"),
            (BodyError::TooManyTrailers, "InvalidRequest"),
        ];
        for (error, code) in cases {
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{error:?}");
            assert_eq!(error.s3_code(), code, "{error:?}");
            assert_eq!(error.s3_error(), (code, error.message()), "{error:?}");
            assert!(error.to_string().ends_with('.'), "{error:?}");
        }
    }
}
