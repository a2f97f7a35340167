//! Startup negotiation: everything a client sends before its StartupMessage.
//!
//! A client may first ask for TLS (SSLRequest: answer `S` and hand the socket to rustls when
//! pgcached has a certificate, `N` otherwise) or GSSAPI encryption (always `N`), or send a
//! CancelRequest instead of a session. Packets are read with exact lengths, so no byte sent
//! before the TLS handshake is ever buffered and later trusted as if it had been encrypted.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::error::SessionError;
use crate::net::Stream;
use crate::wire::startup::{self, StartupMessage, StartupPacket};

/// How the startup phase ended.
pub enum Opening {
    /// A session: the (maybe TLS) stream and the StartupMessage to forward.
    Session {
        stream: Stream,
        startup: StartupMessage,
    },
    /// A cancel request to forward. The client's connection stays open until PostgreSQL has
    /// taken the request: clients (libpq, asyncpg) wait for that close before their next
    /// statement, and a cancel still on its way would stop that statement instead.
    Cancel { stream: Stream, packet: Bytes },
}

/// A failed startup, with the stream when it is still usable for an error message.
pub struct Failed {
    /// What went wrong.
    pub error: SessionError,
    /// The client stream, if an ErrorResponse can still be written to it.
    pub stream: Option<Stream>,
}

/// Reads startup-phase packets until a StartupMessage or CancelRequest.
pub async fn negotiate(tcp: TcpStream, acceptor: Option<&TlsAcceptor>) -> Result<Opening, Failed> {
    let mut stream = Stream::Plain(tcp);
    let mut ssl_requested = false;
    let mut gss_requested = false;
    loop {
        let packet = match read_packet(&mut stream).await {
            Ok(packet) => packet,
            Err(error) => {
                let usable = matches!(error, SessionError::Startup(_));
                return Err(Failed {
                    error,
                    stream: usable.then_some(stream),
                });
            }
        };
        match startup::classify(packet) {
            Ok(StartupPacket::SslRequest) => {
                if ssl_requested || stream.is_tls() {
                    return Err(Failed {
                        error: SessionError::DuplicateSslRequest,
                        stream: Some(stream),
                    });
                }
                ssl_requested = true;
                match acceptor {
                    Some(acceptor) => stream = answer_ssl(stream, acceptor).await?,
                    None => {
                        if let Err(e) = stream.write_all(b"N").await {
                            return Err(Failed {
                                error: SessionError::ClientIo(e),
                                stream: None,
                            });
                        }
                    }
                }
            }
            Ok(StartupPacket::GssEncRequest) => {
                if gss_requested || stream.is_tls() {
                    return Err(Failed {
                        error: SessionError::DuplicateSslRequest,
                        stream: Some(stream),
                    });
                }
                gss_requested = true;
                if let Err(e) = stream.write_all(b"N").await {
                    return Err(Failed {
                        error: SessionError::ClientIo(e),
                        stream: None,
                    });
                }
            }
            Ok(StartupPacket::CancelRequest(packet)) => {
                return Ok(Opening::Cancel { stream, packet })
            }
            Ok(StartupPacket::Startup(startup)) => return Ok(Opening::Session { stream, startup }),
            Err(e) => {
                return Err(Failed {
                    error: SessionError::Startup(e),
                    stream: Some(stream),
                })
            }
        }
    }
}

async fn answer_ssl(stream: Stream, acceptor: &TlsAcceptor) -> Result<Stream, Failed> {
    let Stream::Plain(mut tcp) = stream else {
        return Err(Failed {
            error: SessionError::DuplicateSslRequest,
            stream: None,
        });
    };
    if let Err(e) = tcp.write_all(b"S").await {
        return Err(Failed {
            error: SessionError::ClientIo(e),
            stream: None,
        });
    }
    match acceptor.accept(tcp).await {
        Ok(tls) => Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)))),
        Err(e) => Err(Failed {
            error: SessionError::ClientTls(e),
            stream: None,
        }),
    }
}

async fn read_packet(stream: &mut Stream) -> Result<Bytes, SessionError> {
    let mut length_word = [0u8; 4];
    stream
        .read_exact(&mut length_word)
        .await
        .map_err(SessionError::ClientIo)?;
    let length = startup::packet_len(length_word)?;
    let mut packet = BytesMut::zeroed(length);
    packet[..4].copy_from_slice(&length_word);
    stream
        .read_exact(&mut packet[4..])
        .await
        .map_err(SessionError::ClientIo)?;
    Ok(packet.freeze())
}
