//! `BodyReader`: the request body as handlers see it — decoded object bytes.
//!
//! Two layers of framing sit between the socket and a handler, and this
//! reader peels both, streaming through fixed buffers:
//!
//! 1. The HTTP transport framing: `Content-Length` or `Transfer-Encoding:
//!    chunked` ([`super::body`]). With a Content-Length, body bytes are
//!    decoded in place in the connection buffer; HTTP-chunked bodies are
//!    copied into a small staging buffer so that the next layer sees one
//!    contiguous stream (chunk boundaries of the two layers do not line up).
//! 2. The payload form chosen by `x-amz-content-sha256`
//!    ([`crate::auth::PayloadMode`]): the bytes themselves (unsigned, or
//!    hashed with SHA-256 and compared at the end), or the aws-chunked
//!    framing with per-chunk signatures and/or trailers
//!    ([`crate::auth::AwsChunkedDecoder`]). aws-chunked framing is decoded
//!    whenever the payload mode says so, whether or not the client also sent
//!    `Content-Encoding: aws-chunked`, and never reaches the handler.
//!
//! [`BodyReader::read`] returns 0 only once the whole body has been read
//! *and verified*: the SHA-256 matched, every chunk signature matched, the
//! decoded length equals `x-amz-decoded-content-length`. A handler that
//! commits an object after `read` returned 0 therefore never commits bytes
//! the client did not sign. Trailers (such as `x-amz-checksum-crc32`) are
//! available from [`BodyReader::trailers`] at that point.

use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::body::{BodyDecoder, BodyStep};
use super::io::{ConnIo, deadline_in};
use crate::auth::{AwsChunkedDecoder, AwsChunkedMode, ChunkStep, PayloadMode};
use crate::error::S3Error;
use crate::s3_error;

/// Where the transport-decoded bytes are.
enum Transport {
    /// No body at all.
    Empty,
    /// `remaining` bytes of body left, in place in the connection buffer.
    Length { remaining: u64 },
    /// HTTP chunked: decoded bytes are staged in `staging[from..to]`.
    Chunked {
        decoder: BodyDecoder,
        staging: Vec<u8>,
        from: usize,
        to: usize,
        finished: bool,
    },
}

/// The payload layer.
enum Payload {
    Plain { sha256: Option<(Sha256, [u8; 32])> },
    AwsChunked(Box<AwsChunkedDecoder>),
}

/// Where the next decoded bytes for the handler are: a range of the
/// connection buffer or of the staging buffer.
#[derive(Clone, Copy)]
enum Ready {
    None,
    Conn(usize, usize),
    Staging(usize, usize),
}

pub struct BodyReader<'c> {
    io: &'c mut ConnIo,
    transport: Transport,
    payload: Payload,
    ready: Ready,
    finished: bool,
    /// Set once a read failed: the body is refused, its framing state is no
    /// longer trustworthy, and every later read fails the same way without
    /// touching the decoders again.
    failed: Option<crate::error::S3ErrorCode>,
    decoded_len: u64,
    /// The object size the client declared: Content-Length for plain
    /// bodies, `x-amz-decoded-content-length` for aws-chunked ones.
    declared_len: Option<u64>,
    read_timeout_ms: u64,
    trailers: Vec<(String, String)>,
    /// The client asked for `100 Continue` and has not got it: it is sent
    /// when the handler first reads (see [`Self::send_continue_on_first_read`]).
    continue_pending: bool,
}

/// Staging buffer size for HTTP-chunked bodies.
const STAGING_BYTES: usize = 64 * 1024;

impl<'c> BodyReader<'c> {
    /// A reader for a request with the given transport framing and payload
    /// mode. `decoded_content_length` is the value of
    /// `x-amz-decoded-content-length`, if sent.
    pub fn new(
        io: &'c mut ConnIo,
        framing: super::request::BodyFraming,
        payload: PayloadMode,
        decoded_content_length: Option<u64>,
        read_timeout_ms: u64,
    ) -> BodyReader<'c> {
        use super::request::BodyFraming;
        let transport = match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => Transport::Empty,
            BodyFraming::ContentLength(len) => Transport::Length { remaining: len },
            BodyFraming::Chunked => Transport::Chunked {
                decoder: BodyDecoder::chunked(),
                staging: vec![0_u8; STAGING_BYTES + crate::limits::CHUNK_LINE_BYTES_MAX],
                from: 0,
                to: 0,
                finished: false,
            },
        };
        let transport_len = match framing {
            BodyFraming::None => Some(0),
            BodyFraming::ContentLength(len) => Some(len),
            BodyFraming::Chunked => None,
        };
        let (payload, declared_len) = match payload {
            PayloadMode::Unsigned => (Payload::Plain { sha256: None }, transport_len),
            PayloadMode::Sha256(expected) => (
                Payload::Plain {
                    sha256: Some((Sha256::new(), expected)),
                },
                transport_len,
            ),
            PayloadMode::StreamingSigned { trailer, seed } => (
                Payload::AwsChunked(Box::new(AwsChunkedDecoder::new(
                    AwsChunkedMode::Signed(seed),
                    trailer,
                ))),
                decoded_content_length,
            ),
            PayloadMode::StreamingUnsignedTrailer => (
                Payload::AwsChunked(Box::new(AwsChunkedDecoder::new(
                    AwsChunkedMode::Unsigned,
                    true,
                ))),
                decoded_content_length,
            ),
        };
        BodyReader {
            io,
            transport,
            payload,
            ready: Ready::None,
            finished: false,
            failed: None,
            decoded_len: 0,
            declared_len,
            read_timeout_ms,
            trailers: Vec::new(),
            continue_pending: false,
        }
    }

    /// The client asked for `100 Continue` (`Expect: 100-continue`): send
    /// it when the handler first asks for body bytes, and not before. A
    /// handler that refuses the request before it reads (a missing bucket,
    /// a full disk) answers without it, and the client never sends the
    /// body (RFC 9110 §10.1.1).
    pub fn send_continue_on_first_read(&mut self) {
        self.continue_pending = true;
    }

    /// The object size the client declared, if it did.
    #[must_use]
    pub fn declared_len(&self) -> Option<u64> {
        self.declared_len
    }

    /// Whether the body has been read to its end (and verified).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Trailing headers of an aws-chunked or HTTP-chunked body, names in
    /// lower case; complete once `read` has returned 0.
    #[must_use]
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Copy the next decoded bytes into `out`. Returns 0 at the end of the
    /// body, after every check passed.
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize, S3Error> {
        assert!(!out.is_empty());
        if let Some(code) = self.failed {
            return Err(S3Error::new(code, "The request body was already refused."));
        }
        if self.continue_pending {
            self.continue_pending = false;
            if let Err(error) = self.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await {
                self.failed = Some(crate::error::S3ErrorCode::InternalError);
                return Err(S3Error::internal(error));
            }
        }
        loop {
            if let Some(len) = self.deliver(out) {
                return Ok(len);
            }
            if self.finished {
                return Ok(0);
            }
            if let Err(error) = self.advance().await {
                self.failed = Some(error.code);
                self.ready = Ready::None;
                return Err(error);
            }
        }
    }

    /// Read the whole body into memory, refusing more than `limit` bytes
    /// (for XML request bodies, never for object data).
    pub async fn read_to_vec(&mut self, limit: u64) -> Result<Vec<u8>, S3Error> {
        let mut body = Vec::new();
        let mut chunk = vec![0_u8; 16 * 1024];
        loop {
            let len = self.read(&mut chunk).await?;
            if len == 0 {
                return Ok(body);
            }
            if (body.len() + len) as u64 > limit {
                return Err(s3_error!(
                    MalformedXML,
                    "The XML you provided was larger than the maximum of {limit} bytes allowed"
                ));
            }
            body.extend_from_slice(&chunk[..len]);
        }
    }

    /// Read and discard the rest of the body, for keep-alive after a handler
    /// that did not need it. Gives up (returns false) past `limit` bytes.
    pub async fn drain(&mut self, limit: u64) -> bool {
        // A client still waiting for `100 Continue` may send the body after
        // a wait of its own, or never: there is nothing to drain reliably.
        if self.failed.is_some() || self.continue_pending {
            return false;
        }
        let mut scratch = [0_u8; 8192];
        let mut drained = 0_u64;
        while !self.finished {
            match self.read(&mut scratch).await {
                Ok(0) => break,
                Ok(len) => drained += len as u64,
                Err(_) => return false,
            }
            if drained > limit {
                return false;
            }
        }
        true
    }

    /// Hand out ready bytes, if there are any.
    fn deliver(&mut self, out: &mut [u8]) -> Option<usize> {
        let (from, to) = match self.ready {
            Ready::None => return None,
            Ready::Conn(from, to) | Ready::Staging(from, to) => (from, to),
        };
        let len = (to - from).min(out.len());
        let bytes = match self.ready {
            Ready::Conn(..) => self.io.slice(from, from + len),
            Ready::Staging(..) => match &self.transport {
                Transport::Chunked { staging, .. } => &staging[from..from + len],
                _ => unreachable!("staging range without a chunked transport"),
            },
            Ready::None => unreachable!(),
        };
        out[..len].copy_from_slice(bytes);
        if let Payload::Plain {
            sha256: Some((hasher, _)),
        } = &mut self.payload
        {
            hasher.update(&out[..len]);
        }
        self.decoded_len += len as u64;
        self.ready = match (self.ready, from + len == to) {
            (_, true) => Ready::None,
            (Ready::Conn(..), false) => Ready::Conn(from + len, to),
            (Ready::Staging(..), false) => Ready::Staging(from + len, to),
            (Ready::None, false) => unreachable!(),
        };
        Some(len)
    }

    /// Make progress: decode more ready bytes, or reach the verified end.
    /// Only called when nothing is ready, so moving buffered bytes is safe.
    async fn advance(&mut self) -> Result<(), S3Error> {
        let (available, in_conn, at_end) = self.available();
        match &mut self.payload {
            Payload::Plain { .. } => {
                if available.1 > available.0 {
                    self.ready = if in_conn {
                        Ready::Conn(available.0, available.1)
                    } else {
                        Ready::Staging(available.0, available.1)
                    };
                    self.consume_transport(available.1 - available.0);
                    return Ok(());
                }
                if at_end {
                    return self.finish();
                }
            }
            Payload::AwsChunked(decoder) => {
                let input = if in_conn {
                    self.io.slice(available.0, available.1)
                } else {
                    match &self.transport {
                        Transport::Chunked { staging, .. } => &staging[available.0..available.1],
                        _ => unreachable!(),
                    }
                };
                let (consumed, step) = decoder.step(input).map_err(S3Error::from)?;
                match step {
                    ChunkStep::Data { start, end } => {
                        let (from, to) = (available.0 + start, available.0 + end);
                        self.ready = if in_conn {
                            Ready::Conn(from, to)
                        } else {
                            Ready::Staging(from, to)
                        };
                        self.consume_transport(consumed);
                        return Ok(());
                    }
                    ChunkStep::End => {
                        self.trailers = decoder.trailers().to_vec();
                        self.consume_transport(consumed);
                        self.expect_transport_end().await?;
                        return self.finish();
                    }
                    ChunkStep::NeedMore => {
                        // The decoder consumes all it is given when it needs
                        // more, so at the end of the transport the body ends
                        // here: `finish` accepts the endings SDKs send
                        // without a final empty line, and refuses the rest.
                        let ended = if at_end {
                            decoder.finish().map_err(S3Error::from)?;
                            Some(decoder.trailers().to_vec())
                        } else {
                            None
                        };
                        self.consume_transport(consumed);
                        if let Some(trailers) = ended {
                            self.trailers = trailers;
                            return self.finish();
                        }
                    }
                }
            }
        }
        self.fill_transport().await
    }

    /// The transport-decoded bytes available now, as (from, to) in the
    /// connection or staging buffer, whether they are in the connection
    /// buffer, and whether the transport has no more bytes after them.
    fn available(&self) -> ((usize, usize), bool, bool) {
        match &self.transport {
            Transport::Empty => ((0, 0), true, true),
            Transport::Length { remaining } => {
                let buffered = self.io.end - self.io.start;
                let len = usize::try_from(*remaining).map_or(buffered, |r| r.min(buffered));
                (
                    (self.io.start, self.io.start + len),
                    true,
                    *remaining == len as u64,
                )
            }
            Transport::Chunked {
                from, to, finished, ..
            } => ((*from, *to), false, *finished),
        }
    }

    fn consume_transport(&mut self, len: usize) {
        match &mut self.transport {
            Transport::Empty => assert_eq!(len, 0),
            Transport::Length { remaining } => {
                // Ready bytes stay where they are until delivered: consuming
                // only moves `start`, and nothing refills while bytes are
                // ready.
                self.io.start += len;
                *remaining -= len as u64;
                if self.io.start == self.io.end && matches!(self.ready, Ready::None) {
                    self.io.consume(0);
                }
            }
            Transport::Chunked { from, .. } => *from += len,
        }
    }

    /// Get more transport-decoded bytes: read the socket (Content-Length) or
    /// decode the next HTTP chunk into the staging buffer.
    async fn fill_transport(&mut self) -> Result<(), S3Error> {
        let deadline = deadline_in(self.read_timeout_ms);
        match &mut self.transport {
            Transport::Empty => Err(incomplete_body()),
            Transport::Length { .. } => {
                self.io.consume(0);
                read_more(self.io, deadline).await
            }
            Transport::Chunked {
                decoder,
                staging,
                from,
                to,
                finished,
            } => {
                if *finished {
                    return Err(incomplete_body());
                }
                // Move the unconsumed staged bytes (a partial aws-chunked
                // line at most) to the front.
                staging.copy_within(*from..*to, 0);
                *to -= *from;
                *from = 0;
                loop {
                    let input = self.io.buffered();
                    let (consumed, step) = decoder.step(input).map_err(S3Error::from)?;
                    match step {
                        BodyStep::Data { start, end } => {
                            let room = staging.len() - *to;
                            let len = (end - start).min(room);
                            staging[*to..*to + len].copy_from_slice(&input[start..start + len]);
                            *to += len;
                            // Only what was copied may be consumed; the
                            // decoder reported `consumed` for the whole range.
                            assert!(len == end - start, "staging buffer overflow");
                            self.io.consume(consumed);
                            return Ok(());
                        }
                        BodyStep::End => {
                            self.io.consume(consumed);
                            // HTTP trailers, after any the aws-chunked
                            // framing inside carried.
                            self.trailers.extend_from_slice(decoder.trailers());
                            *finished = true;
                            return Ok(());
                        }
                        BodyStep::NeedMore => {
                            self.io.consume(consumed);
                            read_more(self.io, deadline).await?;
                        }
                    }
                }
            }
        }
    }

    /// The aws-chunked framing has ended: the HTTP framing must end with it.
    /// Bytes left inside the Content-Length, or HTTP chunks after it, would
    /// otherwise stay on the connection and be read as the next request (a
    /// request smuggled inside a signed body), so they fail the request,
    /// and a failed body closes the connection.
    async fn expect_transport_end(&mut self) -> Result<(), S3Error> {
        let trailing = || {
            s3_error!(
                InvalidRequest,
                "The request body continues after the end of its aws-chunked encoding."
            )
        };
        loop {
            match &self.transport {
                Transport::Empty => return Ok(()),
                Transport::Length { remaining } => {
                    return if *remaining == 0 {
                        Ok(())
                    } else {
                        Err(trailing())
                    };
                }
                Transport::Chunked {
                    from, to, finished, ..
                } => {
                    if from != to {
                        return Err(trailing());
                    }
                    if *finished {
                        return Ok(());
                    }
                }
            }
            self.fill_transport().await?;
        }
    }

    /// All bytes are in: run the end-of-body checks.
    fn finish(&mut self) -> Result<(), S3Error> {
        if let Payload::Plain {
            sha256: Some((hasher, expected)),
        } = &mut self.payload
        {
            let actual: [u8; 32] = std::mem::take(hasher).finalize().into();
            if actual != *expected {
                return Err(s3_error!(
                    XAmzContentSHA256Mismatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                )
                .with_extra("ClientComputedContentSHA256", hex::encode(expected))
                .with_extra("S3ComputedContentSHA256", hex::encode(actual)));
            }
        }
        if let Payload::AwsChunked(_) = self.payload
            && let Some(declared) = self.declared_len
            && declared != self.decoded_len
        {
            return Err(incomplete_body());
        }
        self.finished = true;
        Ok(())
    }
}

async fn read_more(io: &mut ConnIo, deadline: Instant) -> Result<(), S3Error> {
    match io.fill(deadline).await {
        Ok(0) => Err(incomplete_body()),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => Err(s3_error!(
            RequestTimeout,
            "Your socket connection to the server was not read from or written to within the \
             timeout period. Idle connections will be closed."
        )),
        Err(error) => Err(S3Error::new(
            crate::error::S3ErrorCode::IncompleteBody,
            format!("The request body could not be read: {error}"),
        )),
    }
}

fn incomplete_body() -> S3Error {
    s3_error!(
        IncompleteBody,
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )
}
