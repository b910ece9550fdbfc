//! Netlink's wire format read and written in place, without netlink_proto's framing: a plain
//! socket ([`PlainSocket`]) that reads the dumps `live` decodes and sends runs of requests
//! several to a datagram ([`PlainSocket::run`]), and a message's attributes, nested ones too,
//! as slices borrowed from the datagram ([`attrs`]). The link and route dumps'
//! decoders (`live::decode_link`, `live::decode_route`) read from these only the attributes
//! netcfg compares, where netlink_packet_route builds every attribute of every message into
//! vectors of enums (on a node of 2,000 links that was about 38,000 instructions per link; on
//! 10,000 routes about 3,000 per route, against some 270 now).
//!
//! Must not panic on any input: an attribute whose length is short or runs past what holds it
//! ends the walk of its nest (and [`Attrs::ended_whole`] says so), a value of the wrong size is
//! not read. The link decoder skips such a value; the route decoder leaves the whole route out,
//! as netlink_packet_route's refusal of the message did, rather than read a part of it.

use super::conn::NlError;
use rtnetlink::packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;

/// The attribute type without its `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` bits.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// The buffer a dump read offers at least (the kernel's cap for a dump datagram).
const DATAGRAM: usize = 32 << 10;

/// Requests of a run sent in one datagram at most ([`PlainSocket::run`]). Every request of a
/// datagram may be refused, and each refusal quotes its request: some 1 KiB of the receive
/// buffer each, so those of one datagram fit the socket's default buffer (208 KiB) with room.
const RUN_DATAGRAM: usize = 64;

/// Netlink lengths are padded to 4 bytes.
pub fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One attribute: its type (flags masked off), its value, and the whole attribute, header
/// included (what a parser of netlink_packet_route takes).
#[derive(Clone, Copy, Debug)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
    pub whole: &'a [u8],
}

/// The attributes in `bytes`, in order, up to the first malformed one.
pub fn attrs(bytes: &[u8]) -> Attrs<'_> {
    Attrs { rest: bytes, broken: false }
}

pub struct Attrs<'a> {
    rest: &'a [u8],
    broken: bool,
}

impl Attrs<'_> {
    /// After the walk: whether it ended at the end of its bytes, not at a malformed attribute
    /// or a stray tail shorter than a header (a decoder that must not take a part for the
    /// whole, as the route dump's, leaves such a message out).
    pub fn ended_whole(&self) -> bool {
        !self.broken && self.rest.is_empty()
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let r = self.rest;
        if r.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([r[0], r[1]]) as usize;
        if len < 4 || len > r.len() {
            self.rest = &[];
            self.broken = true;
            return None;
        }
        let kind = u16::from_ne_bytes([r[2], r[3]]) & NLA_TYPE_MASK;
        // The last attribute of a nest may go without its padding.
        self.rest = r.get(align(len)..).unwrap_or(&[]);
        Some(Attr { kind, value: &r[4..len], whole: &r[..len] })
    }
}

/// A value of exactly one byte.
pub fn u8_of(v: &[u8]) -> Option<u8> {
    match v {
        [b] => Some(*b),
        _ => None,
    }
}

/// A value of exactly two bytes, host order.
pub fn u16_of(v: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(v.try_into().ok()?))
}

/// A value of exactly four bytes, host order.
pub fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.try_into().ok()?))
}

/// A string value: UTF-8, its one terminating NUL (when there is one) left out, like
/// netlink_packet_core's `parse_string`.
pub fn str_of(v: &[u8]) -> Option<&str> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    std::str::from_utf8(v).ok()
}

/// The message at `*at` in `datagram`: its type, sequence number and payload, `*at` stepped
/// past it; `None` at the end, `Err` when its length runs past the datagram.
fn next_message<'d>(datagram: &'d [u8], at: &mut usize) -> Option<Result<Message<'d>, ()>> {
    let h = datagram.get(*at..*at + NLMSG_HDRLEN)?;
    let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let kind = u16::from_ne_bytes([h[4], h[5]]);
    let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
    if mlen < NLMSG_HDRLEN || *at + mlen > datagram.len() {
        return Some(Err(()));
    }
    let payload = &datagram[*at + NLMSG_HDRLEN..*at + mlen];
    *at += align(mlen);
    Some(Ok(Message { kind, seq, payload }))
}

/// A message of a datagram: its type, sequence number and payload (after the header).
struct Message<'d> {
    kind: u16,
    seq: u32,
    payload: &'d [u8],
}

/// The error code of an `NLMSG_ERROR` payload (0: an ack).
fn error_code(payload: &[u8]) -> i32 {
    payload.get(..4).map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
}

/// A netlink route socket, blocking, in the namespace it was opened in: each dump is sent, then
/// its datagrams are read and walked in place until `NLMSG_DONE`; a run of requests goes
/// several to a datagram, answered only where refused ([`PlainSocket::run`]).
pub struct PlainSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl PlainSocket {
    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> io::Result<PlainSocket> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.set_ext_ack(true)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(PlainSocket { sock, seq: 0, buf: Vec::new() })
    }

    /// Sends `request` as a dump and hands each answer to `each` as its message type and its
    /// payload (the bytes after the netlink header). A kernel error ends the dump as `Err`.
    pub fn dump(&mut self, request: RouteNetlinkMessage, mut each: impl FnMut(u16, &[u8])) -> Result<(), NlError> {
        let io_err = |e: io::Error| NlError::other(format!("netlink dump: {e}"));
        // Answers to an earlier dump left unread (it ended in an error) carry its number.
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(request);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0).map_err(io_err)?;
        loop {
            let len = self.recv_whole().map_err(io_err)?;
            let mut at = 0;
            while let Some(m) = next_message(&self.buf[..len], &mut at) {
                let Message { kind, seq, payload } =
                    m.map_err(|()| NlError::other("netlink dump: a message runs past its datagram"))?;
                if seq != self.seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = error_code(payload);
                        if code != 0 {
                            return Err(NlError::from_kernel(code, &payload[4..]));
                        }
                        return Ok(());
                    }
                    _ => each(kind, payload),
                }
            }
        }
    }

    /// Sends `requests` (each a message and its `NLM_F_*` flags besides request and ack) in
    /// order; on a refusal, its position in `requests` and the kernel's error.
    ///
    /// They go [`RUN_DATAGRAM`] to a datagram, and only the last of a datagram asks for an
    /// ack: the kernel answers a request without `NLM_F_ACK` only when it refuses it, handles
    /// a datagram's requests in order, and queues its answers in that order, so the ack of the
    /// last one comes after every refusal of its datagram. Through netlink_proto each route
    /// was a datagram, an ack decoded into messages, a wakeup and two reads. No datagram is sent
    /// after one with a refusal; the requests before the refused one, and those after it in
    /// its datagram, may have been done (the kernel goes on past a refusal), which the
    /// rollback covers as it does a pipelined run's.
    pub fn run(&mut self, requests: Vec<(RouteNetlinkMessage, u16)>) -> Result<(), (usize, NlError)> {
        let total = requests.len();
        let mut out = Vec::new();
        let (mut base, mut first_seq) = (0, self.seq.wrapping_add(1));
        for (i, (msg, flags)) in requests.into_iter().enumerate() {
            let last = i + 1 == total || (i + 1) % RUN_DATAGRAM == 0;
            let mut req = NetlinkMessage::from(msg);
            req.header.flags = NLM_F_REQUEST | flags | if last { NLM_F_ACK } else { 0 };
            self.seq = self.seq.wrapping_add(1);
            req.header.sequence_number = self.seq;
            req.finalize();
            let at = out.len();
            out.resize(at + align(req.buffer_len()), 0);
            req.serialize(&mut out[at..]);
            if last {
                self.send_datagram(&out, first_seq).map_err(|(k, e)| (base + k, e))?;
                out.clear();
                base = i + 1;
                first_seq = self.seq.wrapping_add(1);
            }
        }
        Ok(())
    }

    /// Sends one datagram of requests numbered from `first_seq` (the last asking for an ack)
    /// and reads their answers up to that ack; a refusal is returned with its position in the
    /// datagram (the first one, when several were refused).
    fn send_datagram(&mut self, out: &[u8], first_seq: u32) -> Result<(), (usize, NlError)> {
        let io_err = |e: io::Error| (0, NlError::other(format!("netlink: {e}")));
        let last_seq = self.seq;
        loop {
            match self.sock.send(out, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    r.map_err(io_err)?;
                    break;
                }
            }
        }
        let mut refused: Option<(usize, NlError)> = None;
        loop {
            // A full receive buffer drops answers (`ENOBUFS`): which requests were refused is
            // then unknown, and the datagram counts as refused from its first request.
            let len = self.recv_whole().map_err(io_err)?;
            let mut at = 0;
            while let Some(m) = next_message(&self.buf[..len], &mut at) {
                let Message { kind, seq, payload } =
                    m.map_err(|()| (0, NlError::other("netlink: a message runs past its datagram")))?;
                // Answers to an earlier dump left unread carry other numbers.
                let k = seq.wrapping_sub(first_seq) as usize;
                if kind != NLMSG_ERROR || k > last_seq.wrapping_sub(first_seq) as usize {
                    continue;
                }
                let code = error_code(payload);
                if code != 0 && refused.is_none() {
                    refused = Some((k, NlError::from_kernel(code, &payload[4..])));
                }
                if seq == last_seq {
                    return refused.map_or(Ok(()), Err);
                }
            }
        }
    }

    /// [`PlainSocket::recv`], again when a signal interrupts it.
    fn recv_whole(&mut self) -> io::Result<usize> {
        loop {
            match self.recv() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Reads one datagram whole into `buf` (its size asked first: one message may be larger
    /// than any buffer), returning its length. The buffer offered is at least 32 KiB: the
    /// kernel sizes a dump's next datagram by the largest buffer a read offered (up to 32 KiB),
    /// so a peek with no room kept its datagrams at a page, one or two links each (2,000 links
    /// came in about 1,000 datagrams, each a resumption of the dump and two reads).
    fn recv(&mut self) -> io::Result<usize> {
        self.buf.clear();
        self.buf.reserve(DATAGRAM);
        let size = self.sock.recv(&mut self.buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
        self.buf.clear();
        self.buf.reserve(size);
        let n = self.sock.recv(&mut self.buf, 0)?;
        Ok(n.min(self.buf.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        v.extend(kind.to_ne_bytes());
        v.extend(value);
        v.resize(align(v.len()), 0);
        v
    }

    #[test]
    fn attributes_are_walked_aligned_and_nested_flags_masked() {
        let mut b = nla(3, b"eth0\0");
        b.extend(nla(18 | 0x8000, &nla(1, b"veth\0")));
        b.extend(nla(4, &1500u32.to_ne_bytes()));
        let got: Vec<(u16, &[u8])> = attrs(&b).map(|a| (a.kind, a.value)).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(str_of(got[0].1), Some("eth0"));
        assert_eq!(got[1].0, 18);
        let inner: Vec<_> = attrs(got[1].1).map(|a| (a.kind, str_of(a.value))).collect();
        assert_eq!(inner, [(1, Some("veth"))]);
        assert_eq!(u32_of(got[2].1), Some(1500));
    }

    #[test]
    fn a_malformed_attribute_ends_the_walk_without_panicking() {
        let good = nla(4, &1500u32.to_ne_bytes());
        // Longer than what is left, shorter than its own header.
        for bad in [vec![200u8, 0, 3, 0, b'x'], vec![2, 0, 3, 0]] {
            let mut b = good.clone();
            b.extend(&bad);
            b.extend(&good);
            assert_eq!(attrs(&b).count(), 1, "{bad:?}");
        }
        // A header cut short ends the walk; so does every other cut of a well-formed nest.
        let mut b = good.clone();
        b.extend([8, 0]);
        assert_eq!(attrs(&b).count(), 1);
        let mut b = nla(3, b"br0\0");
        b.extend(nla(18, &nla(1, b"bridge\0")));
        for cut in 0..b.len() {
            for a in attrs(&b[..cut]) {
                attrs(a.value).for_each(drop);
            }
        }
        assert_eq!(u32_of(&[1, 2, 3]), None);
        assert_eq!(u16_of(&[1, 2, 3]), None);
        assert_eq!(u8_of(&[]), None);
    }
}
