//! `ConnIo`: a client socket and its one fixed-size read buffer.
//!
//! The buffer holds at most `limits::CONNECTION_READ_BUFFER_BYTES` of
//! network input: request heads are parsed from it in place and body bytes
//! are decoded from it in place, so a connection never holds more than this,
//! whatever the size of the object it carries. Unconsumed bytes are
//! `buf[start..end]`; reading more first moves them to the front when the
//! free space at the end runs short.
//!
//! Every read has a deadline; a read past it fails with `TimedOut`, so no
//! client can hold a connection slot without sending.

use std::io;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use glommio::net::TcpStream;

use crate::limits;

pub struct ConnIo {
    stream: TcpStream,
    buf: Box<[u8]>,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Bytes read from the socket since the last call to `take_received`.
    received: u64,
    /// Bytes written to the socket since the last call to `take_sent`.
    sent: u64,
}

impl ConnIo {
    #[must_use]
    pub fn new(stream: TcpStream) -> ConnIo {
        ConnIo {
            stream,
            buf: vec![0_u8; limits::CONNECTION_READ_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            received: 0,
            sent: 0,
        }
    }

    /// A connection handed over by another core, with the bytes that core
    /// had already read from it.
    #[must_use]
    pub fn with_buffered(stream: TcpStream, buffered: &[u8]) -> ConnIo {
        let mut io = ConnIo::new(stream);
        assert!(buffered.len() <= io.buf.len());
        io.buf[..buffered.len()].copy_from_slice(buffered);
        io.end = buffered.len();
        io
    }

    /// Give the connection away to another core: a duplicate of its socket
    /// and the unconsumed input. Dropping `self` afterwards closes only this
    /// core's descriptor (never `shutdown`), so the client sees one
    /// continuous connection.
    pub fn hand_off(self) -> std::io::Result<(std::os::fd::OwnedFd, Vec<u8>)> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: dup of a descriptor this value owns and keeps open for
        // the duration of the call.
        let fd = unsafe { libc::dup(self.stream.as_raw_fd()) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by dup and is owned by no one else.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok((owned, self.buffered().to_vec()))
    }

    /// The unconsumed input.
    #[must_use]
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// A range of the buffer by absolute position (valid until the next
    /// `fill`, which may move bytes).
    #[must_use]
    pub fn slice(&self, from: usize, to: usize) -> &[u8] {
        &self.buf[from..to]
    }

    pub fn consume(&mut self, len: usize) {
        assert!(len <= self.end - self.start);
        self.start += len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Read more bytes after the unconsumed ones, waiting at most until
    /// `deadline`. Returns the number read; 0 means the peer closed.
    pub async fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                // Full of unconsumed bytes: callers bound what they leave
                // unconsumed (heads, chunk lines) below the buffer size.
                return Err(io::Error::other("connection buffer full"));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        let end = self.end;
        let read = glommio::timer::timeout(deadline - now, async {
            self.stream
                .read(&mut self.buf[end..])
                .await
                .map_err(glommio::GlommioError::from)
        })
        .await
        .map_err(|error| match error {
            glommio::GlommioError::TimedOut(_) => io::Error::from(io::ErrorKind::TimedOut),
            other => io::Error::other(other.to_string()),
        })?;
        self.end += read;
        self.received += read as u64;
        Ok(read)
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.sent += bytes.len() as u64;
        Ok(())
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    pub async fn close(&mut self) {
        let _ = self.stream.close().await;
    }

    /// Close a connection whose client may still be sending a request body
    /// that will not be read (RFC 9112 §9.6, staged closure): shut down the
    /// sending side, so the client reads the response written so far and
    /// then the end of the stream; read and throw away whatever it still
    /// sends until it closes, `deadline` passes or more than `bytes_max`
    /// bytes were thrown away; then close. Closing at once with unread
    /// input makes the kernel answer with a reset, which may reach the
    /// client before it has read the response.
    pub async fn close_lingering(&mut self, deadline: Instant, bytes_max: u64) {
        if self
            .stream
            .shutdown(std::net::Shutdown::Write)
            .await
            .is_ok()
        {
            let mut discarded = 0_u64;
            while discarded <= bytes_max {
                self.start = 0;
                self.end = 0;
                match self.fill(deadline).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => discarded += read as u64,
                }
            }
        }
        self.close().await;
    }

    pub fn take_received(&mut self) -> u64 {
        std::mem::take(&mut self.received)
    }

    pub fn take_sent(&mut self) -> u64 {
        std::mem::take(&mut self.sent)
    }
}

/// `now + ms`, for deadlines.
#[must_use]
pub fn deadline_in(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}
