//! The `aws-chunked` body decoder, sans-IO.
//!
//! Clients that stream a body of known length but unknown hash send it in
//! the aws-chunked framing (after any HTTP `Transfer-Encoding: chunked` has
//! been removed by the HTTP layer):
//!
//! ```text
//! signed:    hex-size;chunk-signature=<64 hex>\r\n <data> \r\n … 0;chunk-signature=<64 hex>\r\n
//! unsigned:  hex-size\r\n <data> \r\n … 0\r\n
//! then, without trailers:  \r\n
//!       with trailers:     name:value\r\n … [x-amz-trailer-signature:<64 hex>\r\n] \r\n
//! ```
//!
//! Each chunk signature signs
//! `AWS4-HMAC-SHA256-PAYLOAD\n{amz date}\n{scope}\n{previous signature}\n{sha256("")}\n{sha256(chunk data)}`,
//! where the first previous signature is the request's own (the seed), so
//! chunks cannot be dropped, reordered or replaced. The trailer signature
//! signs `AWS4-HMAC-SHA256-TRAILER\n{amz date}\n{scope}\n{previous}\n{sha256(canonical trailers)}`,
//! the canonical trailers being `name:value\n` for each trailer, sorted by
//! name, as the SDKs compute them.
//!
//! The decoder does no I/O: the caller feeds whatever bytes arrived to
//! [`AwsChunkedDecoder::step`], which returns object bytes as ranges of its
//! input (never copied, never buffered: a chunk may be up to
//! [`CHUNK_BYTES_MAX`] long), so the same code serves any read size and the
//! tests can split bodies at every byte. Chunk data is hashed as it passes
//! and the chunk's signature checked when its last byte arrives; that last
//! piece of a forged chunk is never returned. Earlier pieces of it already
//! were, so a caller must discard everything it stored from a body whose
//! decoding fails. Only the size and trailer lines are buffered, each
//! bounded by [`CHUNK_LINE_BYTES_MAX`].
//!
//! What the SDKs send is not quite uniform, so the end of the body is read
//! tolerantly: blank lines before the trailers of a signed trailer section
//! are skipped (AWS's own example shows one), trailer lines may end in a
//! bare `\n` (AWS's unsigned-trailer example does), stray `\r\n` after the
//! end are ignored, and [`AwsChunkedDecoder::finish`] accepts a body that
//! stops where only the final blank line is missing. Framing errors are
//! `IncompleteBody`, which is what S3 answers for any malformed encoding;
//! a wrong chunk or trailer signature is `SignatureDoesNotMatch`; exceeding
//! one of our limits is `InvalidRequest`. S3's rule that every chunk but the
//! last is at least 8 KiB is not enforced: it protects S3's costs, not
//! correctness, and refusing would only break lenient clients.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>

use std::fmt;

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::auth::AuthError;
use crate::auth::sigv4::{EMPTY_SHA256_HEX, HmacSha256, SigningKey, signatures_equal};
use crate::limits::{CHUNK_BYTES_MAX, CHUNK_LINE_BYTES_MAX, TRAILER_BYTES_MAX, TRAILER_COUNT_MAX};

/// The trailer that carries the trailer signature in signed uploads.
const TRAILER_SIGNATURE_NAME: &str = "x-amz-trailer-signature";

/// What continues a request signature into its body: the signing key, the
/// scope and timestamp of the request, and the previous signature of the
/// chain (at first the request's signature, the seed).
#[derive(Clone)]
pub struct ChunkSigningContext {
    /// An HMAC already keyed with the signing key; cloned per signature.
    mac: HmacSha256,
    amz_date: String,
    scope: String,
    previous_signature: [u8; 32],
}

impl ChunkSigningContext {
    /// A chain starting at `seed_signature`, the request's own signature.
    #[must_use]
    pub fn new(key: &SigningKey, amz_date: &str, scope: &str, seed_signature: [u8; 32]) -> Self {
        Self {
            mac: key.mac(),
            amz_date: amz_date.to_owned(),
            scope: scope.to_owned(),
            previous_signature: seed_signature,
        }
    }

    /// Appends the string to sign of the next chunk, whose data hashes to
    /// `chunk_sha256`.
    pub fn push_chunk_string_to_sign(&self, out: &mut Vec<u8>, chunk_sha256: &[u8; 32]) {
        self.push_string_to_sign_head(out, b"AWS4-HMAC-SHA256-PAYLOAD");
        out.extend_from_slice(EMPTY_SHA256_HEX.as_bytes());
        out.push(b'\n');
        push_hex(out, chunk_sha256);
    }

    /// Appends the string to sign of the trailer section, whose canonical
    /// form hashes to `trailer_sha256`.
    pub fn push_trailer_string_to_sign(&self, out: &mut Vec<u8>, trailer_sha256: &[u8; 32]) {
        self.push_string_to_sign_head(out, b"AWS4-HMAC-SHA256-TRAILER");
        push_hex(out, trailer_sha256);
    }

    fn push_string_to_sign_head(&self, out: &mut Vec<u8>, algorithm: &[u8]) {
        out.extend_from_slice(algorithm);
        out.push(b'\n');
        out.extend_from_slice(self.amz_date.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.scope.as_bytes());
        out.push(b'\n');
        push_hex(out, &self.previous_signature);
        out.push(b'\n');
    }

    /// The signature of `string_to_sign` under the request's signing key.
    #[must_use]
    pub fn sign(&self, string_to_sign: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(string_to_sign);
        mac.finalize().into_bytes().into()
    }

    /// Checks the next link of the chain and moves the chain past it.
    fn advance(&mut self, string_to_sign: &[u8], provided: &[u8; 32]) -> Result<(), AuthError> {
        let expected = self.sign(string_to_sign);
        if !signatures_equal(&expected, provided) {
            return Err(AuthError::signature_mismatch());
        }
        self.previous_signature = expected;
        Ok(())
    }
}

impl fmt::Debug for ChunkSigningContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSigningContext")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("previous_signature", &hex::encode(self.previous_signature))
            .finish_non_exhaustive()
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8; 32]) {
    let mut text = [0u8; 64];
    hex::encode_to_slice(bytes, &mut text).expect("64 hex digits hold 32 bytes");
    out.extend_from_slice(&text);
}

/// Whether chunk signatures are checked.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per request, moved once into the decoder; boxing would only add an allocation"
)]
pub enum AwsChunkedMode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: every chunk (and the
    /// trailer section, when expected) carries a signature in the chain.
    Signed(ChunkSigningContext),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, or aws-chunked framing under
    /// `UNSIGNED-PAYLOAD`: signatures are neither required nor checked.
    Unsigned,
}

/// What one [`AwsChunkedDecoder::step`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStep {
    /// Object bytes at `input[start..end]` (never empty); the consumed count
    /// covers them and ends at `end`.
    Data { start: usize, end: usize },
    /// All input was consumed (some of it buffered); feed more.
    NeedMore,
    /// The body is complete; [`AwsChunkedDecoder::trailers`] is final.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a `hex-size[;…]` line.
    SizeLine,
    /// Inside a chunk's data.
    Data { remaining_len: u64 },
    /// Expecting the `\r\n` after a chunk's data; `cr_seen` once `\r` came.
    DataEnd { cr_seen: bool },
    /// Reading the lines after the zero-size chunk.
    Trailers,
    /// The body ended; only stray `\r` and `\n` may follow.
    Done,
    /// An error was returned; the decoder must not be used again.
    Failed,
}

/// The per-chunk verification state of a signed body.
struct ChunkVerifier {
    context: ChunkSigningContext,
    /// Hash of the current chunk's data so far.
    hasher: Sha256,
    /// The signature the current chunk's size line declared.
    declared_signature: [u8; 32],
    /// Reused buffer for strings to sign: no allocation per chunk.
    string_to_sign: Vec<u8>,
}

/// Decodes an aws-chunked body fed in arbitrary pieces.
///
/// ```text
/// loop: (consumed, step) = decoder.step(&buffer[offset..])?; offset += consumed;
///       Data { start, end } → object bytes at buffer[offset - consumed + start .. offset - consumed + end]
///       NeedMore            → read more into a fresh buffer
///       End                 → done (feed any remaining body bytes too: stray CR/LF are allowed)
/// at end of input without End: decoder.finish()?
/// ```
pub struct AwsChunkedDecoder {
    verifier: Option<ChunkVerifier>,
    trailer_expected: bool,
    state: State,
    /// The line being read, terminator included once complete.
    line: Vec<u8>,
    trailers: Vec<(String, String)>,
    /// Bytes of the trailer section so far, terminators included.
    trailer_section_len: usize,
    decoded_len: u64,
}

impl AwsChunkedDecoder {
    /// A decoder for a body in `mode`. `trailer_expected` says whether a
    /// signed body ends in a signed trailer section (the `-TRAILER` forms);
    /// an unsigned body may always carry trailers, as in HTTP chunked.
    #[must_use]
    pub fn new(mode: AwsChunkedMode, trailer_expected: bool) -> Self {
        let verifier = match mode {
            AwsChunkedMode::Signed(context) => Some(ChunkVerifier {
                context,
                hasher: Sha256::new(),
                declared_signature: [0; 32],
                string_to_sign: Vec::with_capacity(256),
            }),
            AwsChunkedMode::Unsigned => None,
        };
        Self {
            verifier,
            trailer_expected,
            state: State::SizeLine,
            line: Vec::new(),
            trailers: Vec::new(),
            trailer_section_len: 0,
            decoded_len: 0,
        }
    }

    /// Consumes from `input`. Returns how many bytes were consumed and what
    /// they were. `NeedMore` always consumes all of `input`.
    ///
    /// # Errors
    /// `IncompleteBody` for malformed framing, `SignatureDoesNotMatch` for a
    /// wrong chunk or trailer signature, `InvalidRequest` past a limit.
    ///
    /// # Panics
    /// When called again after returning an error: the body is refused, and
    /// continuing would be a caller bug.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, ChunkStep), AuthError> {
        assert!(
            self.state != State::Failed,
            "AwsChunkedDecoder used after it returned an error"
        );
        let result = self.step_states(input);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Declares the end of the input. Succeeds when the body is complete,
    /// including when only its final blank line is missing (or, for a signed
    /// trailer section, when no trailer at all was sent).
    ///
    /// # Errors
    /// `IncompleteBody` when the body stops anywhere else.
    pub fn finish(&mut self) -> Result<(), AuthError> {
        let complete = match self.state {
            State::Done => true,
            State::Trailers => {
                let line_empty = self.line.is_empty() || self.line == b"\r";
                let signed_trailer_pending =
                    self.verifier.is_some() && self.trailer_expected && !self.trailers.is_empty();
                line_empty && !signed_trailer_pending
            }
            _ => false,
        };
        if complete {
            self.state = State::Done;
            Ok(())
        } else {
            self.state = State::Failed;
            Err(AuthError::incomplete_body())
        }
    }

    /// The trailers received, names lowercased, values trimmed, in the
    /// order sent (without `x-amz-trailer-signature`). Final after `End`.
    #[must_use]
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Object bytes returned so far.
    #[must_use]
    pub fn decoded_len(&self) -> u64 {
        self.decoded_len
    }

    fn step_states(&mut self, input: &[u8]) -> Result<(usize, ChunkStep), AuthError> {
        let mut offset = 0;
        loop {
            let rest = &input[offset..];
            match self.state {
                State::SizeLine => {
                    let (consumed, complete) = self.take_line(rest)?;
                    offset += consumed;
                    if !complete {
                        return Ok((offset, ChunkStep::NeedMore));
                    }
                    self.start_chunk()?;
                }
                State::Data { remaining_len } => {
                    if rest.is_empty() {
                        return Ok((offset, ChunkStep::NeedMore));
                    }
                    let len = usize::try_from(remaining_len)
                        .map_or(rest.len(), |remaining| remaining.min(rest.len()));
                    let data = &rest[..len];
                    let data_len = u64::try_from(len).expect("a slice length fits u64");
                    if let Some(verifier) = &mut self.verifier {
                        verifier.hasher.update(data);
                    }
                    // No overflow: start_chunk checked decoded_len + chunk size.
                    self.decoded_len += data_len;
                    let remaining_len = remaining_len - data_len;
                    if remaining_len == 0 {
                        self.finish_chunk()?;
                        self.state = State::DataEnd { cr_seen: false };
                    } else {
                        self.state = State::Data { remaining_len };
                    }
                    return Ok((
                        offset + len,
                        ChunkStep::Data {
                            start: offset,
                            end: offset + len,
                        },
                    ));
                }
                State::DataEnd { cr_seen } => {
                    let Some(&byte) = rest.first() else {
                        return Ok((offset, ChunkStep::NeedMore));
                    };
                    match (cr_seen, byte) {
                        (false, b'\r') => self.state = State::DataEnd { cr_seen: true },
                        (true, b'\n') => self.state = State::SizeLine,
                        _ => return Err(AuthError::incomplete_body()),
                    }
                    offset += 1;
                }
                State::Trailers => {
                    let (consumed, complete) = self.take_line(rest)?;
                    offset += consumed;
                    self.trailer_section_len += consumed;
                    if self.trailer_section_len > TRAILER_BYTES_MAX {
                        return Err(limit_exceeded(&format!(
                            "The aws-chunked trailers exceed {TRAILER_BYTES_MAX} bytes."
                        )));
                    }
                    if !complete {
                        return Ok((offset, ChunkStep::NeedMore));
                    }
                    if self.end_trailer_line()? {
                        self.state = State::Done;
                    }
                }
                State::Done => {
                    // Some clients end with one `\r\n` more than the format has.
                    let stray_len = rest
                        .iter()
                        .take_while(|&&byte| byte == b'\r' || byte == b'\n')
                        .count();
                    if stray_len < rest.len() {
                        return Err(AuthError::incomplete_body());
                    }
                    return Ok((offset + stray_len, ChunkStep::End));
                }
                State::Failed => unreachable!("step checks for Failed first"),
            }
        }
    }

    /// Moves bytes up to and including the next `\n` into `self.line`.
    /// Returns how many bytes were consumed and whether the line is complete.
    fn take_line(&mut self, input: &[u8]) -> Result<(usize, bool), AuthError> {
        let room = CHUNK_LINE_BYTES_MAX - self.line.len();
        let window = &input[..input.len().min(room)];
        if let Some(index) = window.iter().position(|&byte| byte == b'\n') {
            self.line.extend_from_slice(&window[..=index]);
            return Ok((index + 1, true));
        }
        if window.len() == room {
            return Err(limit_exceeded(&format!(
                "An aws-chunked line is longer than {CHUNK_LINE_BYTES_MAX} bytes."
            )));
        }
        self.line.extend_from_slice(window);
        Ok((window.len(), false))
    }

    /// Parses a complete size line and enters the chunk it announces.
    fn start_chunk(&mut self) -> Result<(), AuthError> {
        let line = self
            .line
            .strip_suffix(b"\r\n")
            .ok_or_else(AuthError::incomplete_body)?;
        let (size_text, extension) = match line.iter().position(|&byte| byte == b';') {
            Some(index) => (&line[..index], Some(&line[index + 1..])),
            None => (line, None),
        };
        let size = parse_chunk_size(size_text)?;
        if let Some(verifier) = &mut self.verifier {
            let signature = extension
                .and_then(|extension| extension.strip_prefix(b"chunk-signature="))
                .ok_or_else(AuthError::incomplete_body)?;
            hex::decode_to_slice(signature, &mut verifier.declared_signature)
                .map_err(|_| AuthError::incomplete_body())?;
        }
        if self.decoded_len.checked_add(size).is_none() {
            return Err(limit_exceeded("The aws-chunked body is too long."));
        }
        self.line.clear();
        if size == 0 {
            self.finish_chunk()?;
            self.state = State::Trailers;
        } else {
            self.state = State::Data {
                remaining_len: size,
            };
        }
        Ok(())
    }

    /// Checks the signature of the chunk whose data just ended.
    fn finish_chunk(&mut self) -> Result<(), AuthError> {
        if let Some(verifier) = &mut self.verifier {
            let chunk_sha256: [u8; 32] = verifier.hasher.finalize_reset().into();
            verifier.string_to_sign.clear();
            verifier
                .context
                .push_chunk_string_to_sign(&mut verifier.string_to_sign, &chunk_sha256);
            verifier
                .context
                .advance(&verifier.string_to_sign, &verifier.declared_signature)?;
        }
        Ok(())
    }

    /// Handles one complete line of the trailer section. Returns whether the
    /// section (and the body) ended.
    fn end_trailer_line(&mut self) -> Result<bool, AuthError> {
        let line = self
            .line
            .strip_suffix(b"\n")
            .expect("a complete line ends in \\n");
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let signed_trailer = self.verifier.is_some() && self.trailer_expected;
        if line.is_empty() {
            self.line.clear();
            if !signed_trailer {
                return Ok(true);
            }
            if self.trailers.is_empty() {
                // AWS's signed-trailer example has a blank line before the trailers.
                return Ok(false);
            }
            // Trailers that end without their signature are not authenticated.
            return Err(AuthError::incomplete_body());
        }
        if self.verifier.is_some() && !self.trailer_expected {
            return Err(AuthError::incomplete_body());
        }
        let (name, value) = parse_trailer(line)?;
        self.line.clear();
        if signed_trailer && name == TRAILER_SIGNATURE_NAME {
            let signature = crate::auth::sigv4::parse_signature(&value)
                .ok_or_else(AuthError::incomplete_body)?;
            self.verify_trailers(&signature)?;
            return Ok(true);
        }
        if self.trailers.len() == TRAILER_COUNT_MAX {
            return Err(limit_exceeded(&format!(
                "The aws-chunked body has more than {TRAILER_COUNT_MAX} trailers."
            )));
        }
        self.trailers.push((name, value));
        Ok(false)
    }

    /// Checks the trailer signature over the canonical trailers.
    fn verify_trailers(&mut self, signature: &[u8; 32]) -> Result<(), AuthError> {
        let verifier = self
            .verifier
            .as_mut()
            .expect("only signed bodies carry a trailer signature");
        let mut sorted: Vec<&(String, String)> = self.trailers.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut hasher = Sha256::new();
        for (name, value) in sorted {
            hasher.update(name.as_bytes());
            hasher.update(b":");
            hasher.update(value.as_bytes());
            hasher.update(b"\n");
        }
        let trailer_sha256: [u8; 32] = hasher.finalize().into();
        verifier.string_to_sign.clear();
        verifier
            .context
            .push_trailer_string_to_sign(&mut verifier.string_to_sign, &trailer_sha256);
        verifier
            .context
            .advance(&verifier.string_to_sign, signature)
    }
}

impl fmt::Debug for AwsChunkedDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsChunkedDecoder")
            .field("signed", &self.verifier.is_some())
            .field("trailer_expected", &self.trailer_expected)
            .field("state", &self.state)
            .field("decoded_len", &self.decoded_len)
            .field("trailers", &self.trailers)
            .finish_non_exhaustive()
    }
}

/// A chunk size: 1 to 16 hex digits (any more cannot fit a `u64`), at most
/// [`CHUNK_BYTES_MAX`].
fn parse_chunk_size(text: &[u8]) -> Result<u64, AuthError> {
    if text.is_empty() || text.len() > 16 || !text.iter().all(u8::is_ascii_hexdigit) {
        return Err(AuthError::incomplete_body());
    }
    let size = text.iter().fold(0u64, |size, &digit| {
        (size << 4) | u64::from(hex_value(digit))
    });
    if size > CHUNK_BYTES_MAX {
        return Err(limit_exceeded(&format!(
            "An aws-chunked chunk is larger than {CHUNK_BYTES_MAX} bytes."
        )));
    }
    Ok(size)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => unreachable!("checked to be a hex digit"),
    }
}

/// `name:value`, the name a token (lowercased), the value trimmed UTF-8.
fn parse_trailer(line: &[u8]) -> Result<(String, String), AuthError> {
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or_else(AuthError::incomplete_body)?;
    let name = line[..colon].trim_ascii();
    let value = line[colon + 1..].trim_ascii();
    if name.is_empty() || !name.iter().all(|&byte| is_token_byte(byte)) {
        return Err(AuthError::incomplete_body());
    }
    let value = std::str::from_utf8(value).map_err(|_| AuthError::incomplete_body())?;
    let name = std::str::from_utf8(name)
        .expect("token bytes are ASCII")
        .to_ascii_lowercase();
    Ok((name, value.to_owned()))
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn limit_exceeded(message: &str) -> AuthError {
    AuthError::InvalidRequest(message.to_owned())
}

#[cfg(test)]
mod tests {
    //! Goal: the decoder gives the same bytes and trailers however the body
    //! is split, and refuses every damaged body. Method: AWS's published
    //! streaming examples (signed, signed with trailer) and the unsigned
    //! forms the SDKs and AWS's docs send, fed whole, byte by byte and split
    //! at every offset; then flipped bytes, truncations and every limit at
    //! and one past its value.

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const AMZ_DATE: &str = "20130524T000000Z";
    const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const SIGNATURES: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];
    const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
    const TRAILER_SIGNATURES: [&str; 3] = [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ];
    const TRAILER_SIGNATURE: &str =
        "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

    fn context(seed: &str) -> ChunkSigningContext {
        let key = SigningKey::derive(SECRET, "20130524", "us-east-1", "s3");
        let mut seed_bytes = [0u8; 32];
        hex::decode_to_slice(seed, &mut seed_bytes).unwrap();
        ChunkSigningContext::new(&key, AMZ_DATE, SCOPE, seed_bytes)
    }

    fn signed(seed: &str, trailer_expected: bool) -> impl Fn() -> AwsChunkedDecoder {
        let context = context(seed);
        move || AwsChunkedDecoder::new(AwsChunkedMode::Signed(context.clone()), trailer_expected)
    }

    fn unsigned() -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(AwsChunkedMode::Unsigned, true)
    }

    /// The published 64 KiB + 1 KiB body of `'a'`, with `tail` after the
    /// zero-size chunk's line.
    fn example_body(signatures: [&str; 3], tail: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(format!("10000;chunk-signature={}\r\n", signatures[0]).as_bytes());
        body.extend_from_slice(&vec![b'a'; 65536]);
        body.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", signatures[1]).as_bytes());
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n", signatures[2]).as_bytes());
        body.extend_from_slice(tail);
        body
    }

    fn trailer_tail() -> Vec<u8> {
        format!(
            "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n"
        )
        .into_bytes()
    }

    type Decoded = (Vec<u8>, Vec<(String, String)>);

    /// Feeds `pieces` in order, checking the step contract on the way, and
    /// calls `finish` if the decoder never said `End`.
    fn decode_pieces(
        mut decoder: AwsChunkedDecoder,
        pieces: &[&[u8]],
    ) -> Result<Decoded, AuthError> {
        let mut data = Vec::new();
        let mut ended = false;
        for piece in pieces {
            let mut offset = 0;
            while offset < piece.len() {
                let (consumed, step) = decoder.step(&piece[offset..])?;
                match step {
                    ChunkStep::Data { start, end } => {
                        assert!(
                            start < end && end == consumed,
                            "{start}..{end} of {consumed}"
                        );
                        data.extend_from_slice(&piece[offset + start..offset + end]);
                    }
                    ChunkStep::NeedMore => assert_eq!(offset + consumed, piece.len()),
                    ChunkStep::End => {
                        assert_eq!(offset + consumed, piece.len());
                        ended = true;
                    }
                }
                offset += consumed;
            }
        }
        assert_eq!(decoder.decoded_len(), u64::try_from(data.len()).unwrap());
        if !ended {
            decoder.finish()?;
        }
        Ok((data, decoder.trailers().to_vec()))
    }

    fn decode(decoder: AwsChunkedDecoder, body: &[u8]) -> Result<Decoded, AuthError> {
        decode_pieces(decoder, &[body])
    }

    /// Every way of cutting `body` in two at the given offsets, and byte by
    /// byte, gives `expected`.
    fn check_splits(
        make: &dyn Fn() -> AwsChunkedDecoder,
        body: &[u8],
        offsets: impl Iterator<Item = usize>,
        expected: &Decoded,
    ) {
        assert_eq!(&decode(make(), body).unwrap(), expected);
        for split in offsets {
            let (head, tail) = body.split_at(split);
            assert_eq!(
                &decode_pieces(make(), &[head, tail]).unwrap(),
                expected,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(
            &decode_pieces(make(), &bytes).unwrap(),
            expected,
            "byte by byte"
        );
    }

    /// Offsets near the framing of the 66 KiB example bodies (where every
    /// state change happens) plus a stride through the data: splitting a run
    /// of data bytes anywhere else exercises the same code.
    fn example_offsets(body_len: usize) -> impl Iterator<Item = usize> {
        let near = |center: usize| center.saturating_sub(120)..(center + 120).min(body_len);
        near(0)
            .chain(near(65536 + 90))
            .chain(near(65536 + 90 + 1024 + 90))
            .chain(body_len.saturating_sub(300)..body_len)
            .chain((0..body_len).step_by(251))
    }

    fn expected_example(trailers: &[(&str, &str)]) -> Decoded {
        let trailers = trailers
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        (vec![b'a'; 66560], trailers)
    }

    #[test]
    fn aws_chunk_strings_to_sign_and_signatures() {
        let mut chain = context(SEED);
        let big = vec![b'a'; 65536];
        let chunks: [(&[u8], &str); 3] = [
            (
                &big,
                "bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a",
            ),
            (
                &[b'a'; 1024],
                "2edc986847e209b4016e141a6dc8716d3207350f416969382d431539bf292e4a",
            ),
            (b"", EMPTY_SHA256_HEX),
        ];
        let mut previous = SEED.to_owned();
        for ((data, data_hash), expected_signature) in chunks.into_iter().zip(SIGNATURES) {
            let hash: [u8; 32] = Sha256::digest(data).into();
            assert_eq!(hex::encode(hash), data_hash);
            let mut string_to_sign = Vec::new();
            chain.push_chunk_string_to_sign(&mut string_to_sign, &hash);
            assert_eq!(
                String::from_utf8(string_to_sign.clone()).unwrap(),
                format!(
                    "AWS4-HMAC-SHA256-PAYLOAD\n{AMZ_DATE}\n{SCOPE}\n{previous}\n{EMPTY_SHA256_HEX}\n{data_hash}"
                )
            );
            assert_eq!(hex::encode(chain.sign(&string_to_sign)), expected_signature);
            let mut provided = [0u8; 32];
            hex::decode_to_slice(expected_signature, &mut provided).unwrap();
            chain.advance(&string_to_sign, &provided).unwrap();
            previous = expected_signature.to_owned();
        }
    }

    #[test]
    fn aws_trailer_string_to_sign_and_signature() {
        let mut chain = context(TRAILER_SEED);
        let big = vec![b'a'; 65536];
        let chunks: [&[u8]; 3] = [&big, &[b'a'; 1024], b""];
        for (data, expected) in chunks.into_iter().zip(TRAILER_SIGNATURES) {
            let mut string_to_sign = Vec::new();
            chain.push_chunk_string_to_sign(&mut string_to_sign, &Sha256::digest(data).into());
            let mut provided = [0u8; 32];
            hex::decode_to_slice(expected, &mut provided).unwrap();
            chain.advance(&string_to_sign, &provided).unwrap();
        }
        let trailer_hash: [u8; 32] = Sha256::digest(b"x-amz-checksum-crc32c:sOO8/Q==\n").into();
        assert_eq!(
            hex::encode(trailer_hash),
            "1e376db7e1a34a8ef1c4bcee131a2d60a1cb62503747488624e10995f448d774"
        );
        let mut string_to_sign = Vec::new();
        chain.push_trailer_string_to_sign(&mut string_to_sign, &trailer_hash);
        assert_eq!(
            String::from_utf8(string_to_sign.clone()).unwrap(),
            format!(
                "AWS4-HMAC-SHA256-TRAILER\n{AMZ_DATE}\n{SCOPE}\n{}\n1e376db7e1a34a8ef1c4bcee131a2d60a1cb62503747488624e10995f448d774",
                TRAILER_SIGNATURES[2]
            )
        );
        assert_eq!(hex::encode(chain.sign(&string_to_sign)), TRAILER_SIGNATURE);
    }

    #[test]
    fn aws_chunked_example_decodes_however_split() {
        let body = example_body(SIGNATURES, b"\r\n");
        assert_eq!(
            body.len(),
            66824,
            "the Content-Length of the published example"
        );
        check_splits(
            &signed(SEED, false),
            &body,
            example_offsets(body.len()),
            &expected_example(&[]),
        );
    }

    #[test]
    fn aws_trailer_example_decodes_however_split() {
        let body = example_body(TRAILER_SIGNATURES, &trailer_tail());
        let expected = expected_example(&[("x-amz-checksum-crc32c", "sOO8/Q==")]);
        check_splits(
            &signed(TRAILER_SEED, true),
            &body,
            example_offsets(body.len()),
            &expected,
        );
    }

    /// The trailer example as some servers' tests transcribe AWS's page: a
    /// blank line after the zero-size chunk, and no final blank line.
    #[test]
    fn aws_trailer_example_with_the_documented_blank_line() {
        let tail = format!(
            "\r\nx-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n"
        );
        let body = example_body(TRAILER_SIGNATURES, tail.as_bytes());
        let expected = expected_example(&[("x-amz-checksum-crc32c", "sOO8/Q==")]);
        check_splits(
            &signed(TRAILER_SEED, true),
            &body,
            example_offsets(body.len()),
            &expected,
        );
    }

    #[test]
    fn signed_body_without_final_blank_line_is_accepted_at_finish() {
        let body = example_body(SIGNATURES, b"");
        assert_eq!(
            decode(signed(SEED, false)(), &body).unwrap(),
            expected_example(&[])
        );
    }

    /// AWS's `STREAMING-UNSIGNED-PAYLOAD-TRAILER` example ends its trailer
    /// line with a bare `\n` and then two blank lines; the SDKs end with one
    /// `\r\n` blank line; without trailers the body ends `0\r\n\r\n`.
    #[test]
    fn unsigned_forms_decode_however_split() {
        let mut data = vec![b'a'; 17408];
        data[100] = b'b';
        let mut framed = Vec::new();
        for (size, range) in [
            ("2000", 0..8192),
            ("2000", 8192..16384),
            ("400", 16384..17408),
        ] {
            framed.extend_from_slice(format!("{size}\r\n").as_bytes());
            framed.extend_from_slice(&data[range]);
            framed.extend_from_slice(b"\r\n");
        }
        let crc = vec![("x-amz-checksum-crc32".to_owned(), "s3SFCQ==".to_owned())];
        for (tail, trailers) in [
            (&b"0\r\nx-amz-checksum-crc32:s3SFCQ==\n\r\n\r\n"[..], &crc),
            (b"0\r\nx-amz-checksum-crc32:s3SFCQ==\r\n\r\n", &crc),
            (b"0\r\nX-Amz-Checksum-CRC32 :  s3SFCQ==  \r\n\r\n", &crc),
            (b"0\r\n\r\n", &Vec::new()),
        ] {
            let mut body = framed.clone();
            body.extend_from_slice(tail);
            let expected = (data.clone(), trailers.clone());
            check_splits(&unsigned, &body, 0..body.len(), &expected);
        }
    }

    #[test]
    fn unsigned_mode_ignores_chunk_signatures_and_extensions() {
        let body = example_body(SIGNATURES, b"\r\n");
        assert_eq!(decode(unsigned(), &body).unwrap(), expected_example(&[]));
        assert_eq!(
            decode(unsigned(), b"3;name=value\r\nabc\r\n0\r\n\r\n")
                .unwrap()
                .0,
            b"abc"
        );
    }

    /// A small signed body with several chunks and trailers, cut at every
    /// offset and again a short distance later (three pieces), so that two
    /// state changes fall inside one piece. (All pairs of cuts take minutes
    /// in a debug build; short middle pieces are where the states crowd.)
    #[test]
    fn small_signed_body_decodes_in_three_pieces() {
        let chunks: [&[u8]; 3] = [b"hello ", b"wor", b"ld"];
        let trailers = [
            ("x-amz-checksum-sha256", "abc="),
            ("x-amz-checksum-crc32", "def="),
        ];
        let body = sign_body(SEED, &chunks, Some(&trailers));
        let expected: Decoded = (
            b"hello world".to_vec(),
            trailers
                .iter()
                .map(|&(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        );
        let make = signed(SEED, true);
        check_splits(&make, &body, 0..=body.len(), &expected);
        for first in 0..=body.len() {
            for second in
                [1, 2, 3, 5, 8, 13, 21, 34, 55, 89].map(|gap| (first + gap).min(body.len()))
            {
                let pieces = [&body[..first], &body[first..second], &body[second..]];
                assert_eq!(
                    decode_pieces(make(), &pieces).unwrap(),
                    expected,
                    "{first} {second}"
                );
            }
        }
    }

    /// Builds a signed body with our chain (pinned by the AWS vectors above).
    fn sign_body(seed: &str, chunks: &[&[u8]], trailers: Option<&[(&str, &str)]>) -> Vec<u8> {
        fn next_signature(chain: &mut ChunkSigningContext, string_to_sign: &[u8]) -> String {
            let signature = chain.sign(string_to_sign);
            chain.previous_signature = signature;
            hex::encode(signature)
        }
        let mut chain = context(seed);
        let mut body = Vec::new();
        for data in chunks.iter().copied().chain([&b""[..]]) {
            let mut string_to_sign = Vec::new();
            chain.push_chunk_string_to_sign(&mut string_to_sign, &Sha256::digest(data).into());
            let signature = next_signature(&mut chain, &string_to_sign);
            body.extend_from_slice(
                format!("{:x};chunk-signature={signature}\r\n", data.len()).as_bytes(),
            );
            if !data.is_empty() {
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
        }
        if let Some(trailers) = trailers {
            let mut sorted = trailers.to_vec();
            sorted.sort_unstable();
            let canonical = sorted
                .iter()
                .fold(String::new(), |canonical, (name, value)| {
                    canonical + name + ":" + value + "\n"
                });
            let mut string_to_sign = Vec::new();
            chain.push_trailer_string_to_sign(
                &mut string_to_sign,
                &Sha256::digest(canonical.as_bytes()).into(),
            );
            let signature = next_signature(&mut chain, &string_to_sign);
            for (name, value) in trailers {
                body.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            }
            body.extend_from_slice(format!("{TRAILER_SIGNATURE_NAME}:{signature}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    #[test]
    fn flipped_data_or_signature_bytes_fail_the_signature() {
        let body = example_body(SIGNATURES, b"\r\n");
        let find = |needle: &str| {
            body.windows(needle.len())
                .position(|window| window == needle.as_bytes())
                .unwrap()
        };
        let signature_offsets = SIGNATURES.map(find);
        let data_offsets = [
            88,
            89,
            1000,
            88 + 65535,
            find("\r\n400;") + 2 + 86,
            find("\r\n0;") - 1,
        ];
        for offset in data_offsets.into_iter().chain(
            signature_offsets
                .iter()
                .flat_map(|&start| [start, start + 63]),
        ) {
            let mut damaged = body.clone();
            // Stay within hex digits for signatures, so only the value is wrong.
            damaged[offset] = if damaged[offset] == b'0' { b'1' } else { b'0' };
            assert_eq!(
                decode(signed(SEED, false)(), &damaged).unwrap_err(),
                AuthError::signature_mismatch(),
                "{offset}"
            );
        }
        // The wrong seed breaks the first chunk.
        assert_eq!(
            decode(signed(TRAILER_SEED, false)(), &body).unwrap_err(),
            AuthError::signature_mismatch()
        );
    }

    #[test]
    fn flipped_trailer_bytes_fail_the_trailer_signature() {
        let body = example_body(TRAILER_SIGNATURES, &trailer_tail());
        let trailer_start = body.len() - trailer_tail().len();
        for (offset, replacement) in [
            (trailer_start + 23, b'X'),
            (trailer_start + 32 + 24, b'0'),
            (body.len() - 5, b'0'),
        ] {
            let mut damaged = body.clone();
            damaged[offset] = replacement;
            let error = decode(signed(TRAILER_SEED, true)(), &damaged).unwrap_err();
            assert_eq!(error, AuthError::signature_mismatch(), "{offset}");
        }
        // A trailer added after signing is refused too.
        let tail = format!(
            "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-meta-extra:1\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n"
        );
        let body = example_body(TRAILER_SIGNATURES, tail.as_bytes());
        assert_eq!(
            decode(signed(TRAILER_SEED, true)(), &body).unwrap_err(),
            AuthError::signature_mismatch()
        );
    }

    #[test]
    fn malformed_framing_is_an_incomplete_body() {
        let good = example_body(SIGNATURES, b"\r\n");
        let cases: [(&str, Vec<u8>); 6] = [
            (
                "no CRLF after data",
                good.iter()
                    .copied()
                    .take(88 + 65536)
                    .chain(*b"XX")
                    .chain(good[88 + 65538..].iter().copied())
                    .collect(),
            ),
            (
                "no chunk signature",
                [&b"10000\r\n"[..], &good[88..]].concat(),
            ),
            (
                "bad signature hex",
                [&b"10000;chunk-signature=zz\r\n"[..], &good[88..]].concat(),
            ),
            (
                "other extension",
                [&b"10000;chunk-sig=ad80\r\n"[..], &good[88..]].concat(),
            ),
            (
                "bad size",
                [&b"1000g;chunk-signature="[..], &good[22..]].concat(),
            ),
            (
                "LF-only size line",
                [&good[..86], b"\n", &good[88..]].concat(),
            ),
        ];
        for (what, body) in cases {
            let error = decode(signed(SEED, false)(), &body).unwrap_err();
            assert_eq!(error, AuthError::incomplete_body(), "{what}");
        }
        for body in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b" 1\r\n",
            b"00000000000000001\r\n",
        ] {
            assert_eq!(
                decode(unsigned(), body).unwrap_err(),
                AuthError::incomplete_body(),
                "{body:?}"
            );
        }
        // A trailer where the signed form allows none, or a malformed one.
        let body = example_body(SIGNATURES, b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        assert_eq!(
            decode(signed(SEED, false)(), &body).unwrap_err(),
            AuthError::incomplete_body()
        );
        for tail in [
            &b"no colon\r\n\r\n"[..],
            b":value\r\n\r\n",
            b"bad name:v\r\n\r\n",
            b"n:\xff\r\n\r\n",
        ] {
            let body = [&b"0\r\n"[..], tail].concat();
            assert_eq!(
                decode(unsigned(), &body).unwrap_err(),
                AuthError::incomplete_body(),
                "{tail:?}"
            );
        }
        // Signed trailers that end without their signature.
        let body = example_body(
            TRAILER_SIGNATURES,
            b"x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n",
        );
        assert_eq!(
            decode(signed(TRAILER_SEED, true)(), &body).unwrap_err(),
            AuthError::incomplete_body()
        );
    }

    #[test]
    fn data_after_the_end_is_refused_but_stray_crlf_is_not() {
        let mut body = example_body(SIGNATURES, b"\r\n\r\n\n");
        assert_eq!(
            decode(signed(SEED, false)(), &body).unwrap(),
            expected_example(&[])
        );
        body.extend_from_slice(b"x");
        assert_eq!(
            decode(signed(SEED, false)(), &body).unwrap_err(),
            AuthError::incomplete_body()
        );
    }

    /// Goal: a body cut anywhere before its end is refused at `finish`,
    /// except where only the final blank line (or a signed body's absent
    /// trailer section) is missing.
    #[test]
    fn truncated_bodies_are_refused() {
        let small = sign_body(
            SEED,
            &[b"hello ", b"world"],
            Some(&[("x-amz-checksum-crc32", "AAAAAA==")]),
        );
        let make = signed(SEED, true);
        let zero_chunk_end = small
            .windows(2)
            .enumerate()
            .filter(|(_, pair)| pair == b"\r\n")
            .nth(4)
            .unwrap()
            .0
            + 2;
        for len in 0..small.len() {
            let result = decode(make(), &small[..len]);
            // Complete: only the final `\r\n` missing (or its `\n`), or cut right after
            // the zero-size chunk, before any trailer arrived.
            let complete = len == zero_chunk_end || len >= small.len() - 2;
            assert_eq!(result.is_ok(), complete, "prefix of {len} bytes");
            if !complete {
                assert_eq!(
                    result.unwrap_err(),
                    AuthError::incomplete_body(),
                    "prefix of {len} bytes"
                );
            }
        }
        let body = example_body(SIGNATURES, b"\r\n");
        for len in example_offsets(body.len()).filter(|&len| len < body.len() - 2) {
            assert_eq!(
                decode(signed(SEED, false)(), &body[..len]).unwrap_err(),
                AuthError::incomplete_body(),
                "{len}"
            );
        }
        let unsigned_body = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        for len in 0..unsigned_body.len() {
            // After `0\r\n` (no trailers yet) or after the trailer line.
            let complete = len == 11 || len >= unsigned_body.len() - 2;
            assert_eq!(
                decode(unsigned(), &unsigned_body[..len]).is_ok(),
                complete,
                "{len}"
            );
        }
    }

    #[test]
    fn line_length_limit_at_and_past_the_limit() {
        // `5;` + padding + `\r\n` is exactly the limit.
        let padding = "x".repeat(CHUNK_LINE_BYTES_MAX - 4);
        let body = format!("5;{padding}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode(unsigned(), body.as_bytes()).unwrap().0, b"hello");
        let body = format!("5;{padding}x\r\nhello\r\n0\r\n\r\n");
        let error = decode(unsigned(), body.as_bytes()).unwrap_err();
        assert_eq!(error.code(), "InvalidRequest");
        // Fed byte by byte, the refusal comes at the first byte past the limit.
        let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        assert_eq!(
            decode_pieces(unsigned(), &bytes).unwrap_err().code(),
            "InvalidRequest"
        );
        // The same limit holds for a trailer line.
        let value = "v".repeat(CHUNK_LINE_BYTES_MAX - 4);
        let body = format!("0\r\nn:{value}\r\n\r\n");
        assert_eq!(
            decode(unsigned(), body.as_bytes()).unwrap().1[0].1.len(),
            value.len()
        );
        let body = format!("0\r\nn:{value}v\r\n\r\n");
        assert_eq!(
            decode(unsigned(), body.as_bytes()).unwrap_err().code(),
            "InvalidRequest"
        );
    }

    #[test]
    fn trailer_count_limit_at_and_past_the_limit() {
        let trailers = |count: usize| -> String {
            (0..count).fold(String::new(), |lines, index| {
                lines + &format!("x-amz-meta-{index}:v\r\n")
            })
        };
        let body = format!("0\r\n{}\r\n", trailers(TRAILER_COUNT_MAX));
        assert_eq!(
            decode(unsigned(), body.as_bytes()).unwrap().1.len(),
            TRAILER_COUNT_MAX
        );
        let body = format!("0\r\n{}\r\n", trailers(TRAILER_COUNT_MAX + 1));
        assert_eq!(
            decode(unsigned(), body.as_bytes()).unwrap_err().code(),
            "InvalidRequest"
        );
        // The trailer signature line does not count as a trailer.
        let names: Vec<String> = (0..TRAILER_COUNT_MAX)
            .map(|index| format!("x-amz-meta-{index:02}"))
            .collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
        let body = sign_body(SEED, &[b"x"], Some(&pairs));
        assert_eq!(
            decode(signed(SEED, true)(), &body).unwrap().1.len(),
            TRAILER_COUNT_MAX
        );
    }

    #[test]
    fn trailer_bytes_limit_at_and_past_the_limit() {
        // Lines of the longest allowed length plus one shorter line sized to
        // make the section (with its final blank line) exactly the limit.
        let long_line = format!("n:{}\r\n", "v".repeat(CHUNK_LINE_BYTES_MAX - 4));
        let long_count = (TRAILER_BYTES_MAX - 3) / CHUNK_LINE_BYTES_MAX;
        let last_len = TRAILER_BYTES_MAX - 2 - long_count * CHUNK_LINE_BYTES_MAX;
        assert!((5..CHUNK_LINE_BYTES_MAX).contains(&last_len));
        let section = |extra: usize| -> String {
            let last = format!("m:{}\r\n", "w".repeat(last_len - 4 + extra));
            format!("{}{last}\r\n", long_line.repeat(long_count))
        };
        assert_eq!(section(0).len(), TRAILER_BYTES_MAX);
        let body = format!("0\r\n{}", section(0));
        assert_eq!(
            decode(unsigned(), body.as_bytes()).unwrap().1.len(),
            long_count + 1
        );
        let body = format!("0\r\n{}", section(1));
        assert_eq!(
            decode(unsigned(), body.as_bytes()).unwrap_err().code(),
            "InvalidRequest"
        );
    }

    #[test]
    fn chunk_size_limit_at_and_past_the_limit() {
        let at_limit = format!("{CHUNK_BYTES_MAX:x}\r\n");
        let mut decoder = unsigned();
        assert_eq!(
            decoder.step(at_limit.as_bytes()).unwrap(),
            (at_limit.len(), ChunkStep::NeedMore)
        );
        assert_eq!(
            decoder.step(b"abc").unwrap(),
            (3, ChunkStep::Data { start: 0, end: 3 })
        );
        assert_eq!(decoder.finish().unwrap_err(), AuthError::incomplete_body());
        let past_limit = format!("{:x}\r\n", CHUNK_BYTES_MAX + 1);
        assert_eq!(
            unsigned().step(past_limit.as_bytes()).unwrap_err().code(),
            "InvalidRequest"
        );
        assert_eq!(
            unsigned().step(b"ffffffffffffffff\r\n").unwrap_err().code(),
            "InvalidRequest"
        );
    }

    #[test]
    fn step_on_empty_input_and_after_the_end() {
        let mut decoder = unsigned();
        assert_eq!(decoder.step(b"").unwrap(), (0, ChunkStep::NeedMore));
        assert_eq!(decoder.step(b"0\r\n\r\n").unwrap(), (5, ChunkStep::End));
        assert_eq!(decoder.step(b"").unwrap(), (0, ChunkStep::End));
        assert_eq!(decoder.step(b"\r\n").unwrap(), (2, ChunkStep::End));
        decoder.finish().unwrap();
    }

    #[test]
    #[should_panic(expected = "used after it returned an error")]
    fn step_after_an_error_is_a_bug() {
        let mut decoder = unsigned();
        assert!(decoder.step(b"zz\r\n").is_err());
        let _ = decoder.step(b"0\r\n\r\n");
    }
}
