//! Request-head parsing: bytes off the socket to a [`RequestHead`].
//!
//! This module owns the first step of every request: finding where the head
//! ends, checking it against the head limits of [`crate::limits`], and turning
//! it into `http` types. It also answers the questions the connection loop
//! asks of a head before it touches the body: how the body is framed
//! ([`RequestHead::framing`]), whether the connection stays open
//! ([`RequestHead::keep_alive`]) and whether the client waits for
//! `100 Continue` ([`RequestHead::expects_continue`]).
//!
//! It does not own I/O, routing, authentication or the body itself: it is
//! pure, sans-IO code over a byte slice, like hyper's `proto/h1/role.rs`, so
//! the connection loop in `conn.rs` decides when to read, and every rule here
//! can be tested by feeding bytes (see the "shotgun" tests at the bottom,
//! which split every head at every byte offset).
//!
//! The grammar is [RFC 9112](https://www.rfc-editor.org/rfc/rfc9112). The
//! line-level work is done by `httparse`, which is strict by default: no
//! whitespace before a header's colon, no obsolete line folding, no bare CR.
//! Leading empty lines before the request line are skipped, as RFC 9112
//! §2.2 asks of a server, and they count towards the head's length.
//!
//! Every [`ParseError`] leaves the connection's byte stream at an unknown
//! position: the server answers with [`ParseError::status`] and
//! [`ParseError::s3_code`] and then closes the connection.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

use crate::limits::{HEADER_COUNT_MAX, REQUEST_HEAD_BYTES_MAX, URI_BYTES_MAX};

/// A parsed request head: the request line and the header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request-target exactly as sent.
    pub target: String,
    /// The path part of the target (before `?`), still percent-encoded.
    /// An absolute-form target (`http://host/path`) is reduced to its path,
    /// and to `/` when it has none.
    pub path: String,
    /// The raw query after `?`; `None` when the target has no `?`, and
    /// `Some("")` when it ends with one.
    pub query: Option<String>,
    /// The minor HTTP version: 0 or 1 (the major version is always 1).
    pub version_minor: u8,
    pub headers: HeaderMap,
}

/// How a request's body is delimited, as its head declares it
/// ([`RequestHead::framing`]); `body::BodyDecoder::new` turns it into a
/// decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: a request without
    /// a body (RFC 9112 §6.3).
    None,
    /// `Content-Length`: exactly this many bytes follow the head.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request head, or the body framing it declares, was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The method is not a token.
    Method,
    /// The request-target is not origin-form or absolute-form, holds a
    /// fragment, or is not UTF-8.
    Uri,
    /// The request-target is longer than [`URI_BYTES_MAX`].
    UriTooLong,
    /// The HTTP version is neither HTTP/1.0 nor HTTP/1.1.
    Version,
    /// A header line, or the end of a line, is malformed (bare CR, invalid
    /// name or value, obsolete line folding).
    Header,
    /// The head is longer than [`REQUEST_HEAD_BYTES_MAX`].
    HeadTooLarge,
    /// The head has more than [`HEADER_COUNT_MAX`] header fields.
    TooManyHeaders,
    /// More than one `Host` header: which one names the bucket would be a
    /// guess, and RFC 9112 §3.2 requires a 400.
    Host,
    /// An absolute-form target whose authority is not the `Host` header.
    /// The signature covers `Host`, and routing would follow the target: a
    /// presigned URL for one bucket could then read or overwrite the same
    /// key in every other bucket (virtual-hosted style names the bucket in
    /// the host). A request must name one host.
    HostMismatch,
    /// `Content-Length` is not a decimal number, or is repeated with
    /// different values.
    ContentLength,
    /// `Transfer-Encoding` is malformed: empty, `chunked` not last or given
    /// twice, or sent in an HTTP/1.0 request (RFC 9112 §6.1).
    TransferEncoding,
    /// Both `Transfer-Encoding` and `Content-Length`: two framings that
    /// another hop may resolve differently, the classic request smuggling
    /// setup (RFC 9112 §6.3), so the request is refused.
    TransferEncodingAndContentLength,
    /// A transfer coding other than `chunked` (`gzip`, `deflate`...).
    TransferEncodingNotImplemented,
}

impl ParseError {
    /// The S3 error code and message of the error response, for
    /// `error.rs`, which derives the HTTP status from the code.
    #[must_use]
    pub fn s3_error(self) -> (&'static str, &'static str) {
        (self.s3_code(), self.message())
    }

    /// The HTTP status of the error response, the one AWS S3 sends with
    /// [`Self::s3_code`].
    ///
    /// A too-long URI is 400, not the 414 of RFC 9110: AWS S3 counts the
    /// request line into its header-section limit and answers 400
    /// `RequestHeaderSectionTooLarge`, and S3 clients know that pair.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::TransferEncodingNotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::Method
            | Self::Uri
            | Self::UriTooLong
            | Self::Version
            | Self::Header
            | Self::HeadTooLarge
            | Self::TooManyHeaders
            | Self::Host
            | Self::HostMismatch
            | Self::ContentLength
            | Self::TransferEncoding
            | Self::TransferEncodingAndContentLength => StatusCode::BAD_REQUEST,
        }
    }

    /// The S3 error code of the error response, as AWS S3 names it.
    ///
    /// - `RequestHeaderSectionTooLarge`: AWS describes it as "the request
    ///   header and query parameters used to make the request exceed the
    ///   maximum allowed size", so it covers a long URI as well as a large
    ///   or crowded header section.
    /// - `InvalidURI`: "Couldn't parse the specified URI."
    /// - `NotImplemented`: what AWS answers to a `Transfer-Encoding` it does
    ///   not support ("A header you provided implies functionality that is
    ///   not implemented").
    /// - `InvalidRequest`: every other malformed head. S3 has no code for
    ///   broken HTTP syntax; this is its generic 400.
    #[must_use]
    pub fn s3_code(self) -> &'static str {
        match self {
            Self::UriTooLong | Self::HeadTooLarge | Self::TooManyHeaders => {
                "RequestHeaderSectionTooLarge"
            }
            Self::Uri => "InvalidURI",
            Self::TransferEncodingNotImplemented => "NotImplemented",
            Self::Method
            | Self::Version
            | Self::Header
            | Self::Host
            | Self::HostMismatch
            | Self::ContentLength
            | Self::TransferEncoding
            | Self::TransferEncodingAndContentLength => "InvalidRequest",
        }
    }

    /// The message of the error response, in AWS's words where AWS has
    /// an error for the case.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Method => "The request method is malformed.",
            Self::Uri => "Couldn't parse the specified URI.",
            Self::UriTooLong => "Your request URI exceeds the maximum allowed length.",
            Self::Version => "The HTTP version is malformed or not supported.",
            Self::Header => "A request header field is malformed.",
            Self::HeadTooLarge => "Your request header section exceeds the maximum allowed size.",
            Self::TooManyHeaders => "Your request has more header fields than allowed.",
            Self::Host => "Your request has more than one Host header.",
            Self::HostMismatch => {
                "The host of the absolute request-target is not the Host header's."
            }
            Self::ContentLength => "The Content-Length header is malformed or inconsistent.",
            Self::TransferEncoding => "The Transfer-Encoding header is malformed.",
            Self::TransferEncodingAndContentLength => {
                "A request must not have both Transfer-Encoding and Content-Length."
            }
            Self::TransferEncodingNotImplemented => {
                "A header you provided implies functionality that is not implemented."
            }
        }
    }
}

impl From<ParseError> for crate::error::S3Error {
    fn from(error: ParseError) -> Self {
        let (code, message) = error.s3_error();
        crate::error::S3Error::named(code, message)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ParseError {}

/// Parses the request head at the start of `buf`.
///
/// - `Ok(None)`: the head is incomplete; read more bytes and call again with
///   the whole buffer (the parse restarts from the beginning, as hyper's
///   does: the head is bounded, so this costs at most a few passes over
///   [`REQUEST_HEAD_BYTES_MAX`] bytes).
/// - `Ok(Some((head, head_len)))`: the head is complete and is
///   `buf[..head_len]`, leading empty lines included; what follows belongs
///   to the body or to the next request.
///
/// Only the first [`REQUEST_HEAD_BYTES_MAX`] bytes are ever looked at, so an
/// incomplete head that already fills them is [`ParseError::HeadTooLarge`].
///
/// # Errors
///
/// A [`ParseError`] when the head is malformed or passes a limit; the
/// connection is answered and closed.
///
/// # Panics
///
/// Only if httparse breaks its own contract (a complete request without a
/// request line, or a head longer than the bytes it was given).
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let window = &buf[..buf.len().min(REQUEST_HEAD_BYTES_MAX)];
    // httparse writes only the header slots it uses, so they need not be
    // initialized: this saves clearing 100 slots on every call.
    let mut header_slots = [const { std::mem::MaybeUninit::uninit() }; HEADER_COUNT_MAX];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(window, &mut header_slots) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => {
            if partial_target_len(window, &request) > URI_BYTES_MAX {
                return Err(ParseError::UriTooLong);
            }
            if window.len() == REQUEST_HEAD_BYTES_MAX {
                return Err(ParseError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(error) => return Err(classify(error, &request)),
    };
    assert!(head_len <= REQUEST_HEAD_BYTES_MAX);

    // httparse only sets these three when it returns Complete.
    let (Some(method), Some(target), Some(version_minor)) =
        (request.method, request.path, request.version)
    else {
        unreachable!("httparse returned a complete request without a request line");
    };
    if target.len() > URI_BYTES_MAX {
        return Err(ParseError::UriTooLong);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| ParseError::Method)?;
    let (path, query) = split_target(target)?;

    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ParseError::Header)?;
        // from_bytes keeps non-UTF-8 values (obs-text) as they were sent.
        let value = HeaderValue::from_bytes(field.value).map_err(|_| ParseError::Header)?;
        headers.append(name, value);
    }
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(ParseError::Host);
    }
    if let Some(authority) = absolute_form_authority(target) {
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        if host.is_none_or(|host| !host.eq_ignore_ascii_case(authority.as_bytes())) {
            return Err(ParseError::HostMismatch);
        }
    }

    let head = RequestHead {
        method,
        target: target.to_owned(),
        path: path.to_owned(),
        query: query.map(str::to_owned),
        version_minor,
        headers,
    };
    Ok(Some((head, head_len)))
}

/// Maps an httparse error to ours. httparse reports a bad method and a bad
/// target with the same `Token` error; the method is set once it has parsed,
/// so a `Token` error after that is the target's.
fn classify(error: httparse::Error, request: &httparse::Request<'_, '_>) -> ParseError {
    match error {
        httparse::Error::Token if request.method.is_some() => ParseError::Uri,
        httparse::Error::Token => ParseError::Method,
        httparse::Error::Version => ParseError::Version,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::HeaderName
        | httparse::Error::HeaderValue
        | httparse::Error::NewLine
        | httparse::Error::Status => ParseError::Header,
    }
}

/// Length of the request-target received so far while the request line is
/// still incomplete, so that a too-long target is refused as soon as it is
/// too long rather than when the head limit is reached. Zero when the
/// target has not started or is already complete.
fn partial_target_len(window: &[u8], request: &httparse::Request<'_, '_>) -> usize {
    let (Some(method), None) = (request.method, request.path) else {
        return 0;
    };
    // httparse got here by skipping empty lines, then the method and one SP;
    // everything after that is target bytes it has accepted.
    let line_start = window
        .iter()
        .position(|&byte| byte != b'\r' && byte != b'\n')
        .unwrap_or(window.len());
    window.len().saturating_sub(line_start + method.len() + 1)
}

/// Splits a request-target into its path and query.
///
/// Accepts origin-form (`/path?query`) and absolute-form
/// (`http://authority/path?query`, which RFC 9112 §3.2.2 requires servers
/// to accept). Asterisk-form and authority-form are for `OPTIONS *` and
/// `CONNECT`, which S3 does not serve.
fn split_target(target: &str) -> Result<(&str, Option<&str>), ParseError> {
    // A request-target has no fragment (RFC 9112 §3.2): a raw `#` is a
    // client bug, since a key containing `#` arrives percent-encoded.
    if target.contains('#') {
        return Err(ParseError::Uri);
    }
    let (before_query, query) = match target.split_once('?') {
        Some((before_query, query)) => (before_query, Some(query)),
        None => (target, None),
    };
    if before_query.starts_with('/') {
        return Ok((before_query, query));
    }
    let rest = strip_http_scheme(before_query).ok_or(ParseError::Uri)?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if !is_valid_authority(authority) {
        return Err(ParseError::Uri);
    }
    Ok((path, query))
}

/// The rest of `target` after `http://` or `https://` (the scheme is
/// case-insensitive), or `None` when it has neither.
fn strip_http_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let prefix = target.get(..scheme.len())?;
        prefix
            .eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// An absolute-form authority must name a host, and userinfo (`user@host`)
/// is refused: RFC 9110 §4.2.4 deprecates it, and it makes the host
/// ambiguous to anything that reads the target naively.
fn is_valid_authority(authority: &str) -> bool {
    !authority.is_empty() && !authority.contains('@')
}

/// The authority of an absolute-form target, `None` for origin-form.
fn absolute_form_authority(target: &str) -> Option<&str> {
    let rest = strip_http_scheme(target)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Whether any comma-separated element of any `name` field equals `token`,
/// ignoring ASCII case (for `Connection` and `Expect`, which are lists).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|element| {
            element
                .trim_matches([' ', '\t'])
                .eq_ignore_ascii_case(token)
        })
}

impl RequestHead {
    /// How the request body is framed (RFC 9112 §6).
    ///
    /// # Errors
    ///
    /// A [`ParseError`] when the framing headers are malformed, ambiguous
    /// or not implemented. The end of the body then cannot be found, so the
    /// connection must be closed after the error response.
    pub fn framing(&self) -> Result<BodyFraming, ParseError> {
        let has_transfer_encoding = self.headers.contains_key(header::TRANSFER_ENCODING);
        let has_content_length = self.headers.contains_key(header::CONTENT_LENGTH);
        if has_transfer_encoding {
            if has_content_length {
                return Err(ParseError::TransferEncodingAndContentLength);
            }
            // RFC 9112 §6.1: an HTTP/1.0 peer may not know chunked, so a
            // Transfer-Encoding from it means the framing is faulty.
            if self.version_minor == 0 {
                return Err(ParseError::TransferEncoding);
            }
            return check_transfer_coding(&self.headers).map(|()| BodyFraming::Chunked);
        }
        if has_content_length {
            return parse_content_length(&self.headers).map(BodyFraming::ContentLength);
        }
        Ok(BodyFraming::None)
    }

    /// Whether the connection stays open after this request: by default in
    /// HTTP/1.1 unless the client sends `Connection: close`, and in HTTP/1.0
    /// only if the client asks with `Connection: keep-alive`.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        let close = has_token(&self.headers, &header::CONNECTION, "close");
        if self.version_minor == 0 {
            !close && has_token(&self.headers, &header::CONNECTION, "keep-alive")
        } else {
            !close
        }
    }

    /// Whether the client waits for `100 Continue` before it sends the body
    /// (`Expect: 100-continue`). HTTP/1.0 clients cannot understand a 1xx
    /// response, so RFC 9110 §10.1.1 says to ignore the expectation there.
    #[must_use]
    pub fn expects_continue(&self) -> bool {
        self.version_minor == 1 && has_token(&self.headers, &header::EXPECT, "100-continue")
    }

    /// The host the request is addressed to: the `Host` header, which the
    /// signature covers. (An absolute-form target must name the same host,
    /// or [`parse_head`] refuses it with [`ParseError::HostMismatch`].)
    /// `None` when there is none, or when its value is empty or not visible
    /// ASCII. The port, if any, is still attached.
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        let host = self.headers.get(header::HOST)?.to_str().ok()?;
        (!host.is_empty()).then_some(host)
    }
}

/// Accepts exactly `Transfer-Encoding: chunked`, possibly spread over list
/// syntax (`, chunked`) and any ASCII case.
fn check_transfer_coding(headers: &HeaderMap) -> Result<(), ParseError> {
    let mut coding_count = 0_usize;
    let mut chunked_count = 0_usize;
    let mut last_is_chunked = false;
    let mut unsupported = false;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let value = value.to_str().map_err(|_| ParseError::TransferEncoding)?;
        for coding in value
            .split(',')
            .map(|coding| coding.trim_matches([' ', '\t']))
        {
            // Empty list elements are allowed by RFC 9110 §5.6.1.
            if coding.is_empty() {
                continue;
            }
            coding_count += 1;
            last_is_chunked = coding.eq_ignore_ascii_case("chunked");
            if last_is_chunked {
                chunked_count += 1;
            } else {
                unsupported = true;
            }
        }
    }
    // The body's end is found by the chunked coding only when it is applied
    // exactly once and last (RFC 9112 §6.3); anything else is ambiguous.
    if coding_count == 0 || chunked_count > 1 || (chunked_count == 1 && !last_is_chunked) {
        return Err(ParseError::TransferEncoding);
    }
    // Other codings (gzip...) would have to be undone before the body is
    // stored: not implemented, and AWS S3 refuses them with 501 too. This
    // includes a lone `gzip`, for which RFC 9112 would allow a 400.
    if unsupported {
        return Err(ParseError::TransferEncodingNotImplemented);
    }
    Ok(())
}

/// The body length from every `Content-Length` field. Repeats of the same
/// value (`5, 5`, or two fields of `5`) are accepted as RFC 9110 §8.6
/// allows; differing values are refused, since two hops could each pick a
/// different one.
fn parse_content_length(headers: &HeaderMap) -> Result<u64, ParseError> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let value = value.to_str().map_err(|_| ParseError::ContentLength)?;
        for element in value
            .split(',')
            .map(|element| element.trim_matches([' ', '\t']))
        {
            // u64::from_str alone would also accept a leading `+`.
            if element.is_empty() || !element.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(ParseError::ContentLength);
            }
            let element = element
                .parse::<u64>()
                .map_err(|_| ParseError::ContentLength)?;
            if length.is_some_and(|length| length != element) {
                return Err(ParseError::ContentLength);
            }
            length = Some(element);
        }
    }
    length.ok_or(ParseError::ContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Option<(RequestHead, usize)>, ParseError>;

    /// Feeds `pieces` the way the connection loop does: append each piece
    /// to the buffer and parse the whole buffer again, until the parser
    /// gives an answer.
    fn feed(pieces: &[&[u8]]) -> Outcome {
        let mut buffer = Vec::new();
        for piece in pieces {
            buffer.extend_from_slice(piece);
            if let Some(answer) = parse_head(&buffer).transpose() {
                return answer.map(Some);
            }
        }
        Ok(None)
    }

    /// Goal: the parser's answer depends only on the bytes, never on how
    /// they were split into reads. Method (hyper's shotgun tests): feed the
    /// input whole, split in two at every byte offset, and one byte at a
    /// time, and require the same answer each time. Returns that answer.
    ///
    /// The connection loop parses its whole buffer again after each read,
    /// and `parse_head` is a pure function of that buffer, so feeding a
    /// split at `i` answers with the prefix `input[..i]` if that has an
    /// answer, else with the whole input; one byte at a time answers with
    /// the first prefix that has one. All feedings agree with the whole
    /// input exactly when every proper prefix answers "incomplete" or the
    /// same as the whole, which is checked with one parse per prefix. The
    /// limit tests' 32 KiB heads would take a minute in a debug build if
    /// each feeding re-ran from the start, so only small inputs are also
    /// fed for real, as a check on this reasoning.
    fn shotgun(input: &[u8]) -> Outcome {
        let whole = parse_head(input);
        for split in 0..input.len() {
            let answer = parse_head(&input[..split]);
            assert!(
                answer == Ok(None) || answer == whole,
                "split at {split}: {answer:?}"
            );
        }
        if input.len() <= 4096 {
            for split in 0..=input.len() {
                let (first, second) = input.split_at(split);
                assert_eq!(feed(&[first, second]), whole, "split at {split}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(feed(&bytes), whole, "one byte at a time");
        }
        whole
    }

    fn parsed(input: &[u8]) -> (RequestHead, usize) {
        shotgun(input).expect("valid head").expect("complete head")
    }

    fn rejected(input: &[u8]) -> ParseError {
        shotgun(input).expect_err("invalid head")
    }

    fn head_with(lines: &str) -> RequestHead {
        parsed(format!("{lines}\r\n\r\n").as_bytes()).0
    }

    #[test]
    fn simple_get() {
        let input = b"GET /bucket/key%20name?versionId=3&x=%2F HTTP/1.1\r\n\
                      Host: s3.example.com:9000\r\n\
                      X-Amz-Date: 20240101T000000Z\r\n\
                      x-amz-meta-a: 1\r\n\
                      X-AMZ-META-A: 2\r\n\r\n";
        let (head, head_len) = parsed(input);
        assert_eq!(head_len, input.len());
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.target, "/bucket/key%20name?versionId=3&x=%2F");
        assert_eq!(head.path, "/bucket/key%20name");
        assert_eq!(head.query.as_deref(), Some("versionId=3&x=%2F"));
        assert_eq!(head.version_minor, 1);
        assert_eq!(head.headers["x-amz-date"], "20240101T000000Z");
        let metadata: Vec<_> = head.headers.get_all("x-amz-meta-a").iter().collect();
        assert_eq!(metadata, ["1", "2"]);
        assert_eq!(head.host(), Some("s3.example.com:9000"));
    }

    #[test]
    fn head_len_stops_before_body_and_next_request() {
        let head = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        let mut input = head.to_vec();
        input.extend_from_slice(b"helloGET / HTTP/1.1\r\n\r\n");
        let (parsed_head, head_len) = parsed(&input);
        assert_eq!(head_len, head.len());
        assert_eq!(parsed_head.framing(), Ok(BodyFraming::ContentLength(5)));
    }

    #[test]
    fn query_forms() {
        assert_eq!(head_with("GET / HTTP/1.1").query, None);
        assert_eq!(head_with("GET /? HTTP/1.1").query.as_deref(), Some(""));
        let head = head_with("GET /b?list-type=2&prefix=a?b HTTP/1.1");
        assert_eq!(head.path, "/b");
        assert_eq!(head.query.as_deref(), Some("list-type=2&prefix=a?b"));
    }

    #[test]
    fn absolute_form_is_reduced_to_path_and_names_the_host() {
        let head = head_with(
            "GET http://bucket.s3.local:9000/key?acl HTTP/1.1\r\nHost: Bucket.S3.local:9000",
        );
        assert_eq!(head.target, "http://bucket.s3.local:9000/key?acl");
        assert_eq!(head.path, "/key");
        assert_eq!(head.query.as_deref(), Some("acl"));
        assert_eq!(head.host(), Some("Bucket.S3.local:9000"));

        let head = head_with("GET HTTPS://h HTTP/1.1\r\nHost: h");
        assert_eq!(head.path, "/");
        assert_eq!(head.query, None);
        assert_eq!(head.host(), Some("h"));

        let head = head_with("GET http://h?x HTTP/1.1\r\nHost: h");
        assert_eq!(head.path, "/");
        assert_eq!(head.query.as_deref(), Some("x"));
    }

    #[test]
    fn absolute_form_must_name_the_host_that_was_signed() {
        // Regression: routing followed the absolute-form authority while
        // the signature covered `Host`, so a presigned URL for
        // `photos.localhost` could be aimed at `private.localhost`.
        for input in [
            "GET http://private.localhost:9000/cat.jpg HTTP/1.1\r\nHost: photos.localhost:9000\r\n\r\n",
            "GET http://private.localhost:9000/cat.jpg HTTP/1.1\r\nHost: private.localhost\r\n\r\n",
            "GET http://private.localhost/cat.jpg HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(input.as_bytes()),
                Err(ParseError::HostMismatch),
                "{input}"
            );
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let input = b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (head, head_len) = parsed(input);
        assert_eq!(head_len, input.len());
        assert_eq!(head.path, "/");
    }

    #[test]
    fn non_utf8_header_values_are_kept() {
        let input = b"GET / HTTP/1.1\r\nx-amz-meta-name: caf\xe9\xff\r\n\r\n";
        let (head, _) = parsed(input);
        assert_eq!(head.headers["x-amz-meta-name"].as_bytes(), b"caf\xe9\xff");
    }

    #[test]
    fn extension_methods_are_accepted() {
        assert_eq!(head_with("PURGE / HTTP/1.1").method.as_str(), "PURGE");
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for input in [
            &b""[..],
            b"\r\n",
            b"GET",
            b"GET /",
            b"GET / HTTP/1.",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r",
        ] {
            assert_eq!(shotgun(input), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn bad_method() {
        assert_eq!(rejected(b"G(T / HTTP/1.1\r\n\r\n"), ParseError::Method);
        assert_eq!(rejected(b"GET\r\n\r\n"), ParseError::Method);
        // A TLS ClientHello sent to the plain-text port.
        assert_eq!(
            rejected(b"\x16\x03\x01\x02\x00\x01\x00"),
            ParseError::Method
        );
    }

    #[test]
    fn bad_version() {
        for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/1", "HTTX/1.1", "http/1.1"] {
            let input = format!("GET / {version}\r\nHost: h\r\n\r\n");
            assert_eq!(rejected(input.as_bytes()), ParseError::Version, "{version}");
        }
    }

    #[test]
    fn bad_target() {
        for target in [
            "abc",
            "*",
            "http://",
            "http:///x",
            "http://u@h/x",
            "/a#frag",
            "ftp://h/x",
        ] {
            let input = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(rejected(input.as_bytes()), ParseError::Uri, "{target}");
        }
        assert_eq!(rejected(b"GET /\xff\xfe HTTP/1.1\r\n\r\n"), ParseError::Uri);
        // Two spaces: the target would be empty.
        assert_eq!(rejected(b"GET  / HTTP/1.1\r\n\r\n"), ParseError::Uri);
        assert_eq!(rejected(b"GET /a\x01b HTTP/1.1\r\n\r\n"), ParseError::Uri);
    }

    #[test]
    fn bare_cr_is_refused() {
        assert_eq!(
            rejected(b"GET / HTTP/1.1\rHost: h\r\n\r\n"),
            ParseError::Header
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
            ParseError::Header
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nHost: h\r\n\rX"),
            ParseError::Header
        );
        assert_eq!(rejected(b"\rGET / HTTP/1.1\r\n\r\n"), ParseError::Header);
    }

    #[test]
    fn bad_header_lines() {
        for line in [
            "Bad Name: x",
            "Host : h",
            "Host: h\r\n folded",
            ": empty-name",
            "no-colon",
            "x-nul: a\0b",
            "x-del: a\x7fb",
        ] {
            let input = format!("GET / HTTP/1.1\r\n{line}\r\n\r\n");
            assert_eq!(rejected(input.as_bytes()), ParseError::Header, "{line:?}");
        }
    }

    #[test]
    fn duplicate_host_is_refused() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        assert_eq!(rejected(input), ParseError::Host);
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n";
        assert_eq!(rejected(input), ParseError::Host);
    }

    /// A complete head of exactly `len` bytes, padded with one header.
    fn head_of_len(len: usize) -> Vec<u8> {
        let start = b"GET / HTTP/1.1\r\nx-pad: ";
        let end = b"\r\n\r\n";
        let mut input = start.to_vec();
        input.resize(len - end.len(), b'p');
        input.extend_from_slice(end);
        assert_eq!(input.len(), len);
        input
    }

    #[test]
    fn head_bytes_limit() {
        let (_, head_len) = parsed(&head_of_len(REQUEST_HEAD_BYTES_MAX));
        assert_eq!(head_len, REQUEST_HEAD_BYTES_MAX);
        assert_eq!(
            rejected(&head_of_len(REQUEST_HEAD_BYTES_MAX + 1)),
            ParseError::HeadTooLarge
        );
    }

    #[test]
    fn head_bytes_limit_for_incomplete_heads() {
        let input = head_of_len(REQUEST_HEAD_BYTES_MAX + 1);
        // One byte short of the limit, with the head unfinished: wait.
        assert_eq!(parse_head(&input[..REQUEST_HEAD_BYTES_MAX - 1]), Ok(None));
        // At the limit, still unfinished: it can only end past the limit.
        let at_limit = &input[..REQUEST_HEAD_BYTES_MAX];
        assert_eq!(parse_head(at_limit), Err(ParseError::HeadTooLarge));
        // Endless empty lines are bounded too.
        let empty_lines = b"\r\n".repeat(REQUEST_HEAD_BYTES_MAX / 2);
        assert_eq!(parse_head(&empty_lines), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn bytes_after_a_complete_head_do_not_count() {
        let mut input = head_of_len(REQUEST_HEAD_BYTES_MAX);
        input.extend_from_slice(&[b'x'; 1000]);
        let (_, head_len) = parse_head(&input).unwrap().unwrap();
        assert_eq!(head_len, REQUEST_HEAD_BYTES_MAX);
    }

    fn head_with_header_count(count: usize) -> Vec<u8> {
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..count {
            input.extend_from_slice(format!("x-h{index}: {index}\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        input
    }

    #[test]
    fn header_count_limit() {
        let (head, _) = parsed(&head_with_header_count(HEADER_COUNT_MAX));
        assert_eq!(head.headers.len(), HEADER_COUNT_MAX);
        let input = head_with_header_count(HEADER_COUNT_MAX + 1);
        assert_eq!(rejected(&input), ParseError::TooManyHeaders);
    }

    fn head_with_target_len(len: usize) -> Vec<u8> {
        let mut target = "/b/".to_owned();
        target.push_str(&"k".repeat(len - target.len()));
        format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes()
    }

    #[test]
    fn uri_length_limit() {
        let (head, _) = parsed(&head_with_target_len(URI_BYTES_MAX));
        assert_eq!(head.target.len(), URI_BYTES_MAX);
        let input = head_with_target_len(URI_BYTES_MAX + 1);
        assert_eq!(rejected(&input), ParseError::UriTooLong);
    }

    #[test]
    fn uri_length_limit_for_incomplete_request_lines() {
        let input = head_with_target_len(URI_BYTES_MAX + 1);
        let target_start = "GET ".len();
        // The whole target but not its end: it may still be the right size.
        assert_eq!(parse_head(&input[..target_start + URI_BYTES_MAX]), Ok(None));
        // One more target byte, still no end: too long already.
        let past = &input[..=target_start + URI_BYTES_MAX];
        assert_eq!(parse_head(past), Err(ParseError::UriTooLong));
        // Leading empty lines are not part of the target.
        let mut with_empty_lines = b"\r\n\r\n".to_vec();
        with_empty_lines.extend_from_slice(&input[..target_start + URI_BYTES_MAX]);
        assert_eq!(parse_head(&with_empty_lines), Ok(None));
    }

    fn framing_of(lines: &str) -> Result<BodyFraming, ParseError> {
        head_with(lines).framing()
    }

    #[test]
    fn framing_without_body() {
        assert_eq!(framing_of("GET / HTTP/1.1"), Ok(BodyFraming::None));
    }

    #[test]
    fn framing_content_length() {
        let framing =
            |value: &str| framing_of(&format!("PUT / HTTP/1.1\r\nContent-Length: {value}"));
        assert_eq!(framing("0"), Ok(BodyFraming::ContentLength(0)));
        assert_eq!(framing("007"), Ok(BodyFraming::ContentLength(7)));
        assert_eq!(framing("5, 5"), Ok(BodyFraming::ContentLength(5)));
        assert_eq!(
            framing("18446744073709551615"),
            Ok(BodyFraming::ContentLength(u64::MAX))
        );
        for bad in [
            "abc",
            "-1",
            "+5",
            "",
            "1 2",
            "5, 6",
            ",",
            "0x10",
            "18446744073709551616",
        ] {
            assert_eq!(framing(bad), Err(ParseError::ContentLength), "{bad:?}");
        }
        let two_fields = "PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5";
        assert_eq!(framing_of(two_fields), Ok(BodyFraming::ContentLength(5)));
        let duplicate = "PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6";
        assert_eq!(framing_of(duplicate), Err(ParseError::ContentLength));
    }

    #[test]
    fn framing_transfer_encoding() {
        let framing =
            |value: &str| framing_of(&format!("PUT / HTTP/1.1\r\nTransfer-Encoding: {value}"));
        assert_eq!(framing("chunked"), Ok(BodyFraming::Chunked));
        assert_eq!(framing("Chunked"), Ok(BodyFraming::Chunked));
        assert_eq!(framing(", chunked ,"), Ok(BodyFraming::Chunked));
        for not_implemented in ["gzip", "gzip, chunked", "identity", "chunked;x=1"] {
            let expected = Err(ParseError::TransferEncodingNotImplemented);
            assert_eq!(framing(not_implemented), expected, "{not_implemented}");
        }
        for malformed in ["chunked, gzip", "chunked, chunked", ",", ""] {
            assert_eq!(
                framing(malformed),
                Err(ParseError::TransferEncoding),
                "{malformed}"
            );
        }
        let split = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked";
        assert_eq!(framing_of(split), Err(ParseError::TransferEncoding));
        let gzip_then_chunked =
            "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked";
        assert_eq!(
            framing_of(gzip_then_chunked),
            Err(ParseError::TransferEncodingNotImplemented)
        );
    }

    #[test]
    fn framing_refuses_smuggling_setups() {
        let both = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5";
        assert_eq!(
            framing_of(both),
            Err(ParseError::TransferEncodingAndContentLength)
        );
        let both = "PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip";
        assert_eq!(
            framing_of(both),
            Err(ParseError::TransferEncodingAndContentLength)
        );
        let http10 = "PUT / HTTP/1.0\r\nTransfer-Encoding: chunked";
        assert_eq!(framing_of(http10), Err(ParseError::TransferEncoding));
    }

    #[test]
    fn keep_alive() {
        let cases = [
            ("GET / HTTP/1.1", true),
            ("GET / HTTP/1.1\r\nConnection: close", false),
            ("GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE", false),
            (
                "GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close",
                false,
            ),
            ("GET / HTTP/1.1\r\nConnection: closed", true),
            ("GET / HTTP/1.0", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive", true),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive", true),
            ("GET / HTTP/1.0\r\nConnection: keep-alive, close", false),
        ];
        for (lines, expected) in cases {
            assert_eq!(head_with(lines).keep_alive(), expected, "{lines:?}");
        }
    }

    #[test]
    fn expects_continue() {
        let cases = [
            ("PUT / HTTP/1.1", false),
            ("PUT / HTTP/1.1\r\nExpect: 100-continue", true),
            ("PUT / HTTP/1.1\r\nExpect: 100-Continue", true),
            ("PUT / HTTP/1.1\r\nExpect:  100-continue ", true),
            ("PUT / HTTP/1.1\r\nExpect: 200-ok", false),
            ("PUT / HTTP/1.0\r\nExpect: 100-continue", false),
        ];
        for (lines, expected) in cases {
            assert_eq!(head_with(lines).expects_continue(), expected, "{lines:?}");
        }
    }

    #[test]
    fn host() {
        assert_eq!(head_with("GET / HTTP/1.1").host(), None);
        assert_eq!(head_with("GET / HTTP/1.1\r\nHost:").host(), None);
        assert_eq!(
            head_with("GET / HTTP/1.1\r\nHost: b.s3.local").host(),
            Some("b.s3.local")
        );
        assert_eq!(head_with("GET / HTTP/1.1\r\nHost: café").host(), None);
    }

    #[test]
    fn s3_error_mapping() {
        let cases = [
            (ParseError::Method, 400, "InvalidRequest"),
            (ParseError::Uri, 400, "InvalidURI"),
            (ParseError::UriTooLong, 400, "RequestHeaderSectionTooLarge"),
            (ParseError::Version, 400, "InvalidRequest"),
            (ParseError::Header, 400, "InvalidRequest"),
            (
                ParseError::HeadTooLarge,
                400,
                "RequestHeaderSectionTooLarge",
            ),
            (
                ParseError::TooManyHeaders,
                400,
                "RequestHeaderSectionTooLarge",
            ),
            (ParseError::Host, 400, "InvalidRequest"),
            (ParseError::HostMismatch, 400, "InvalidRequest"),
            (ParseError::ContentLength, 400, "InvalidRequest"),
            (ParseError::TransferEncoding, 400, "InvalidRequest"),
            (
                ParseError::TransferEncodingAndContentLength,
                400,
                "InvalidRequest",
            ),
            (
                ParseError::TransferEncodingNotImplemented,
                501,
                "NotImplemented",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.s3_code(), code, "{error:?}");
            assert_eq!(error.s3_error(), (code, error.message()), "{error:?}");
            assert!(error.to_string().ends_with('.'), "{error:?}");
        }
    }
}
