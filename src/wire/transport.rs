//! The byte pipe under the replication connection: a TCP, TLS-over-TCP or Unix socket with
//! a read buffer framed by [`crate::protocol::frame`] and a write buffer.
//!
//! Both buffers live in the struct, which makes every operation here cancel-safe: a read
//! interrupted by a timer keeps whatever bytes arrived for the next call, and a write
//! interrupted half way keeps the unsent rest in the write buffer, to go out before
//! anything else. The replication stream relies on that: it waits for the server with a
//! deadline (the next status update) and must not lose or tear messages when it fires.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::error::{Error, Kind, Result};
use crate::protocol::frame::{self, BackendMessage};

/// Room made in the read buffer once less than [`MIN_READ`] is left.
const READ_CHUNK: usize = 64 * 1024;

/// The least room a read from the socket is given.
const MIN_READ: usize = 8 * 1024;

/// One of the socket kinds a connection can run over.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Socket {
    /// The server's certificate (end entity, DER) when this is a TLS socket.
    pub(crate) fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Socket::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| c.as_ref()),
            _ => None,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, Socket::Unix(_))
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A framed, buffered connection to one server.
pub(crate) struct Transport {
    socket: Socket,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// `host:port` (or socket path), for error messages.
    peer: String,
}

impl Transport {
    pub(crate) fn new(socket: Socket, peer: String) -> Transport {
        Transport {
            socket,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(1024),
            peer,
        }
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Appends one encoded frontend message to the write buffer (not sent until
    /// [`Transport::flush`]).
    pub(crate) fn queue(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> io::Result<()>,
    ) -> Result<()> {
        encode(&mut self.write_buf).map_err(|e| {
            Error::with_source(
                Kind::Config,
                format!("cannot encode a message for {}", self.peer),
                e,
            )
        })
    }

    /// Sends everything queued. Cancel-safe: what was not written stays queued.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        while !self.write_buf.is_empty() {
            let n = self
                .socket
                .write(&self.write_buf)
                .await
                .map_err(|e| self.io_error("writing to", e))?;
            if n == 0 {
                return Err(Error::new(
                    Kind::Closed,
                    format!("server {} stopped accepting data", self.peer),
                ));
            }
            self.write_buf.advance(n);
        }
        self.socket
            .flush()
            .await
            .map_err(|e| self.io_error("writing to", e))
    }

    /// Whether a write was interrupted and bytes still wait to be sent.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// Reads the next backend message.
    ///
    /// # Errors
    /// The server closing the connection ([`Kind::Closed`], transient; a close in the
    /// middle of a frame carries [`DecodeError::TornFrame`](crate::protocol::DecodeError)),
    /// i/o errors ([`Kind::Io`], transient) and malformed frames ([`Kind::Protocol`]).
    pub(crate) async fn recv(&mut self) -> Result<BackendMessage> {
        loop {
            if let Some(msg) = self.try_parse()? {
                return Ok(msg);
            }
            self.fill().await?;
        }
    }

    /// Like [`Transport::recv`], but gives up at `deadline` with `Ok(None)`, keeping any
    /// partial frame for the next call.
    pub(crate) async fn recv_until(&mut self, deadline: Instant) -> Result<Option<BackendMessage>> {
        loop {
            if let Some(msg) = self.try_parse()? {
                return Ok(Some(msg));
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(filled) => filled?,
                Err(_elapsed) => return Ok(None),
            }
        }
    }

    fn try_parse(&mut self) -> Result<Option<BackendMessage>> {
        frame::parse(&mut self.read_buf).map_err(|e| {
            Error::with_source(
                Kind::Protocol,
                format!("malformed message from server {}", self.peer),
                e,
            )
        })
    }

    /// Reads more bytes into the buffer. Cancel-safe (`read_buf` keeps nothing in flight).
    async fn fill(&mut self) -> Result<()> {
        // Parsed frames are split off the front and shared with the records made from
        // them, so the spare room left here shrinks with every frame, and a read into a few
        // bytes of room would take only those. Once the room is small a fresh chunk is
        // reserved (a new buffer while the old one is still shared). Not sooner: every
        // buffer stays alive as long as any record made from it, so a buffer only partly
        // filled would hold far more memory than the records the decoder counts.
        if self.read_buf.capacity() - self.read_buf.len() < MIN_READ {
            self.read_buf.reserve(READ_CHUNK);
        }
        let n = self
            .socket
            .read_buf(&mut self.read_buf)
            .await
            .map_err(|e| self.io_error("reading from", e))?;
        if n > 0 {
            return Ok(());
        }
        match frame::check_eof(&self.read_buf) {
            Ok(()) => Err(Error::new(
                Kind::Closed,
                format!("server {} closed the connection", self.peer),
            )),
            Err(torn) => Err(Error::with_source(
                Kind::Closed,
                format!(
                    "server {} closed the connection in the middle of a message",
                    self.peer
                ),
                torn,
            )),
        }
    }

    /// Sends Terminate and closes the socket, ignoring errors: the connection is being
    /// abandoned either way.
    pub(crate) async fn terminate(mut self) {
        let _ = self.queue(|b| {
            postgres_protocol::message::frontend::terminate(b);
            Ok(())
        });
        let _ = self.flush().await;
        let _ = self.socket.shutdown().await;
    }

    fn io_error(&self, doing: &str, e: io::Error) -> Error {
        // rustls reports certificate problems on the first read/write after the handshake
        // as io errors wrapping a rustls::Error.
        if e.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return Error::with_source(
                Kind::Tls,
                format!("tls failure with server {}", self.peer),
                e,
            );
        }
        let kind = if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ) {
            Kind::Closed
        } else {
            Kind::Io
        };
        Error::with_source(kind, format!("{doing} server {}", self.peer), e)
    }
}
