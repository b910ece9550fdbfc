//! One rtnetlink connection per namespace: the socket is opened by a thread that entered the
//! namespace (a netlink socket stays bound to the namespace it was created in), then driven by
//! the caller's tokio runtime. Most requests are awaited one at a time; runs of routes are
//! pipelined ([`Conn::send`], see `apply::Executor::execute_run`). Kernel errors keep the extended-ack message
//! ("Nexthop has invalid gateway"), which is what a user needs to read.

use super::namespaces::{run_at, Location};
use super::wire::PlainSocket;
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, TokioSocket};
use rtnetlink::Handle;
use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};

/// A request that creates an object and fails if it exists.
pub const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// A request that creates an object or replaces the one with the same key.
pub const REPLACE: u16 = NLM_F_CREATE | NLM_F_REPLACE;
/// A request that changes or deletes an existing object.
pub const CHANGE: u16 = 0;

/// An error from the kernel (or from the connection itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NlError {
    /// The positive errno, 0 when the connection failed.
    pub errno: i32,
    pub message: String,
    /// The spec text the error is about, when finer than the op's (the rule nft refused).
    pub span: Option<netcfg_lang::Span>,
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl NlError {
    pub fn other(message: impl Into<String>) -> NlError {
        NlError { errno: 0, message: message.into(), span: None }
    }

    pub(super) fn from_kernel(code: i32, payload: &[u8]) -> NlError {
        let errno = -code;
        let text = io::Error::from_raw_os_error(errno).to_string();
        let text = text.split(" (os error").next().unwrap_or(&text).to_string();
        match ext_ack_message(payload) {
            Some(m) => NlError { errno, message: format!("{text}: {m}"), span: None },
            None => NlError { errno, message: text, span: None },
        }
    }
}

/// The `NLMSGERR_ATTR_MSG` of an extended ack: the error payload is the request (whole, or its
/// header only when capped) followed by attributes.
fn ext_ack_message(p: &[u8]) -> Option<String> {
    let orig_len = u32::from_ne_bytes(p.get(0..4)?.try_into().ok()?) as usize;
    let mut off = if p.len() >= orig_len && orig_len >= 16 { orig_len } else { 16 };
    off = (off + 3) & !3;
    while off + 4 <= p.len() {
        let len = u16::from_ne_bytes([p[off], p[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([p[off + 2], p[off + 3]]);
        if len < 4 || off + len > p.len() {
            return None;
        }
        if kind == 1 {
            let v = &p[off + 4..off + len];
            let v = v.split(|b| *b == 0).next().unwrap_or(v);
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        off += (len + 3) & !3;
    }
    None
}

/// A request sent by [`Conn::send`] whose ack has not been read.
pub struct Pending(LocalBoxStream<'static, NetlinkMessage<RouteNetlinkMessage>>);

impl Pending {
    /// Waits for the request's ack: `Ok` when the kernel did it.
    pub async fn ack(mut self) -> Result<(), NlError> {
        while let Some(m) = self.0.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if let Some(code) = e.code {
                    return Err(NlError::from_kernel(code.get(), &e.header));
                }
            }
        }
        Ok(())
    }
}

/// A session's connections, by namespace (looked up several times per op: hashed fast).
pub type Conns = foldhash::HashMap<super::state::NsName, Conn>;

pub struct Conn {
    handle: Handle,
    /// The socket the dumps are read on (walked in place by `live`'s decoders) and runs of
    /// routes are sent on ([`PlainSocket::run`]).
    pub plain: PlainSocket,
    pub location: Location,
}

impl Conn {
    /// Opens a connection to the namespace at `loc`. Must run inside a tokio runtime, which
    /// drives the connection from then on.
    pub fn open(loc: &Location) -> io::Result<Conn> {
        let (sock, plain) = run_at(loc, || -> io::Result<(Socket, PlainSocket)> {
            let s = Socket::new(NETLINK_ROUTE)?;
            s.set_ext_ack(true)?;
            s.set_rx_buf_sz(4 << 20)?;
            Ok((s, PlainSocket::open()?))
        })??;
        // SAFETY: the fd comes from a socket we own and hand over whole.
        let sock = unsafe { TokioSocket::from_raw_fd(sock.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(sock);
        tokio::spawn(conn);
        Ok(Conn { handle, plain, location: loc.clone() })
    }

    /// Sends one request and waits for its ack.
    pub async fn execute(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut resp = self.handle.request(req).map_err(|e| NlError::other(e.to_string()))?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                if let Some(code) = e.code {
                    return Err(NlError::from_kernel(code.get(), &e.header));
                }
            }
        }
        Ok(())
    }

    /// Sends one request without waiting: its ack is read by [`Pending::ack`]. Requests on one
    /// socket are processed by the kernel in the order they were sent, so a caller may send many
    /// before reading the first ack (pipelining) and still learn which one failed first.
    pub fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Pending, NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let resp = self.handle.request(req).map_err(|e| NlError::other(e.to_string()))?;
        Ok(Pending(resp.boxed_local()))
    }

    /// Sends a dump request and collects every answer.
    pub async fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        self.get(msg, NLM_F_DUMP).await
    }

    /// Sends a get request (`flags` = `NLM_F_DUMP` for a dump) and collects the answers.
    pub async fn get(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        let mut resp = self.handle.request(req).map_err(|e| NlError::other(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(m) = resp.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(i) => out.push(i),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(NlError::from_kernel(code.get(), &e.header));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
