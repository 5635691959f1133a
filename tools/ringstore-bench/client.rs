//! A lean HTTP/1.1 client for one keep-alive connection on a glommio
//! executor: one write per request (head and body together when the body is
//! small), responses parsed with httparse from one reused buffer, bodies
//! read by `Content-Length` or chunked coding and either kept or dropped
//! without copying. A connection that fails or that the server closes is
//! opened again on the next request.

use std::net::SocketAddr;
use std::time::SystemTime;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::sign::{Signer, Stamp, UNSIGNED_PAYLOAD};

/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_BYTES: usize = 64 * 1024;
const READ_BUFFER_BYTES: usize = 256 * 1024;
const HEADERS_MAX: usize = 64;

/// What a request sends.
pub struct Request<'a> {
    pub method: &'a str,
    /// Already percent-encoded (see [`crate::sign::encode_path`]).
    pub path: &'a str,
    /// Canonical (sorted, encoded) query string, without `?`.
    pub query: &'a str,
    /// Extra headers to send and sign (lower-case names).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// Keep the response body (listing pages, errors); otherwise it is
    /// read and dropped.
    pub keep_body: bool,
}

impl<'a> Request<'a> {
    /// A request without query, extra headers or body, whose response body
    /// is dropped (GET, HEAD and DELETE of one object).
    pub fn plain(method: &'a str, path: &'a str) -> Self {
        Request {
            method,
            path,
            query: "",
            headers: &[],
            body: &[],
            keep_body: false,
        }
    }
}

/// What came back.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Bytes of the body, kept or not.
    pub body_len: u64,
    /// The body, when the request asked to keep it or the status is not 2xx.
    pub body: Vec<u8>,
    /// The `ETag` header, quotes included (multipart completion needs it).
    pub etag: Option<String>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The S3 error code of a failed response, or the status.
    pub fn describe_error(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        match (text.find("<Code>"), text.find("</Code>")) {
            (Some(start), Some(end)) if start + 6 <= end => {
                format!("{} {}", self.status, &text[start + 6..end])
            }
            _ => format!("HTTP {}", self.status),
        }
    }
}

/// Where requests go and how they are signed.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The `Host` header (and signed host).
    pub host: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// One connection, reopened on demand.
pub struct Client {
    endpoint: Endpoint,
    signer: Signer,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
    /// Unconsumed bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
    head: Vec<u8>,
    stamp: Option<(u64, Stamp)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of debug output.
        formatter
            .debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(endpoint: &Endpoint) -> Self {
        Self {
            signer: Signer::new(
                &endpoint.access_key_id,
                &endpoint.secret_access_key,
                &endpoint.region,
            ),
            endpoint: endpoint.clone(),
            stream: None,
            buffer: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
            head: Vec::with_capacity(1024),
            stamp: None,
        }
    }

    /// The signing time, formatted once per second.
    fn stamp(&mut self) -> Stamp {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        match &self.stamp {
            Some((cached, stamp)) if *cached == second => stamp.clone(),
            _ => {
                let stamp = Stamp::at(now);
                self.stamp = Some((second, stamp.clone()));
                stamp
            }
        }
    }

    /// Send one request and read its response. An I/O failure drops the
    /// connection (the next request opens a new one) and is returned.
    pub async fn send(&mut self, request: &Request<'_>) -> std::io::Result<Response> {
        let result = self.exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &Request<'_>) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.endpoint.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.start = 0;
            self.end = 0;
        }
        self.build_head(request);
        let coalesce = request.body.len() <= COALESCE_BYTES;
        if coalesce {
            self.head.extend_from_slice(request.body);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.head).await?;
        if !coalesce {
            stream.write_all(request.body).await?;
        }
        self.read_response(request).await
    }

    fn build_head(&mut self, request: &Request<'_>) {
        use std::io::Write as _;
        let stamp = self.stamp();
        let content_length = request.body.len().to_string();
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(request.headers.len() + 3);
        signed.push(("host", &self.endpoint.host));
        signed.push(("x-amz-content-sha256", UNSIGNED_PAYLOAD));
        signed.push(("x-amz-date", &stamp.amz_date));
        signed.extend_from_slice(request.headers);
        let authorization = self.signer.authorization(
            request.method,
            request.path,
            request.query,
            &mut signed,
            &stamp,
        );
        let head = &mut self.head;
        head.clear();
        let _ = write!(head, "{} {}", request.method, request.path);
        if !request.query.is_empty() {
            let _ = write!(head, "?{}", request.query);
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &signed {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !request.body.is_empty() || matches!(request.method, "PUT" | "POST") {
            let _ = write!(head, "content-length: {content_length}\r\n");
        }
        let _ = write!(head, "authorization: {authorization}\r\n\r\n");
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buffer.len() {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buffer.len() {
                return Err(std::io::Error::other("response head too large"));
            }
        }
        let stream = self.stream.as_mut().expect("connected");
        let read = stream.read(&mut self.buffer[self.end..]).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.end += read;
        Ok(read)
    }

    async fn read_response(&mut self, request: &Request<'_>) -> std::io::Result<Response> {
        loop {
            let (status, framing, close, etag, head_len) = loop {
                let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
                let mut parsed = httparse::Response::new(&mut headers);
                match parsed.parse(&self.buffer[self.start..self.end]) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = parsed.code.unwrap_or(0);
                        let (framing, close) = framing(parsed.headers, parsed.version);
                        let etag = parsed
                            .headers
                            .iter()
                            .find(|header| header.name.eq_ignore_ascii_case("etag"))
                            .map(|header| String::from_utf8_lossy(header.value).into_owned());
                        break (status, framing, close, etag, head_len);
                    }
                    Ok(httparse::Status::Partial) => {
                        self.fill().await?;
                    }
                    Err(error) => {
                        return Err(std::io::Error::other(format!("bad response: {error}")));
                    }
                }
            };
            self.start += head_len;
            if status == 100 {
                continue;
            }
            let no_body = request.method == "HEAD" || status == 204 || status == 304;
            let keep = request.keep_body || !(200..300).contains(&status);
            let mut response = Response {
                status,
                etag,
                ..Response::default()
            };
            if !no_body {
                match framing {
                    Framing::Length(length) => {
                        self.read_exact_body(length, keep, &mut response).await?;
                    }
                    Framing::Chunked => self.read_chunked_body(keep, &mut response).await?,
                    Framing::UntilClose => {
                        self.read_until_close(keep, &mut response).await?;
                        self.stream = None;
                    }
                }
            }
            if close {
                self.stream = None;
            }
            return Ok(response);
        }
    }

    async fn read_exact_body(
        &mut self,
        length: u64,
        keep: bool,
        response: &mut Response,
    ) -> std::io::Result<()> {
        let mut left = length;
        while left > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let available = (self.end - self.start) as u64;
            let take = usize::try_from(available.min(left)).expect("fits the buffer");
            if keep {
                response
                    .body
                    .extend_from_slice(&self.buffer[self.start..self.start + take]);
            }
            self.start += take;
            left -= take as u64;
        }
        response.body_len += length;
        Ok(())
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(at) = self.buffer[self.start..self.end]
                .windows(2)
                .position(|pair| pair == b"\r\n")
            {
                let line =
                    String::from_utf8_lossy(&self.buffer[self.start..self.start + at]).into_owned();
                self.start += at + 2;
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn read_chunked_body(
        &mut self,
        keep: bool,
        response: &mut Response,
    ) -> std::io::Result<()> {
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(());
            }
            self.read_exact_body(size, keep, response).await?;
            if !self.read_line().await?.is_empty() {
                return Err(std::io::Error::other("chunk not followed by CRLF"));
            }
        }
    }

    async fn read_until_close(
        &mut self,
        keep: bool,
        response: &mut Response,
    ) -> std::io::Result<()> {
        loop {
            let available = self.end - self.start;
            if keep {
                response
                    .body
                    .extend_from_slice(&self.buffer[self.start..self.end]);
            }
            response.body_len += available as u64;
            self.start = self.end;
            match self.fill().await {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(headers: &[httparse::Header<'_>], version: Option<u8>) -> (Framing, bool) {
    let mut framing = Framing::UntilClose;
    let mut close = version == Some(0);
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            if let Some(length) = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                && !matches!(framing, Framing::Chunked)
            {
                framing = Framing::Length(length);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    (framing, close)
}
