//! Whether netcfg's table is in a namespace, asked over nfnetlink (`NFT_MSG_GETTABLE`): one
//! request and its answer, where listing the table runs `nft` (behind `ip netns exec` for a
//! named namespace), 10 to 25 ms here. A namespace that has no table of netcfg's yet (a first
//! apply, a node without a firewall) is then not listed at all; one that has is listed as
//! before. When the kernel cannot be asked (no nf_tables, a refused socket) the answer is
//! `None` and the caller lists.

use super::exec::Target;
use super::ruleset::TABLE_NAME;
use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFPROTO_INET: u8 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

/// Whether `inet netcfg` exists in `target`'s namespace; `None` when that could not be asked.
pub fn table_exists(target: &Target) -> Option<bool> {
    match target {
        Target::Current => ask(),
        Target::Named(name) => crate::netns::run_in(name, ask).ok().flatten(),
        Target::Scratch => None,
    }
}

/// An nf_tables request: the netlink header, nfnetlink's `nfgenmsg` (`family`, version 0,
/// resource 0) and `attrs` (already laid out and padded). Shared with `generation`.
pub(super) fn nftables_request(msg: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// The request: the table's name as `NFTA_TABLE_NAME` (NUL-terminated, padded to 4 bytes) in
/// family inet.
fn request(seq: u32) -> Vec<u8> {
    let attr_len = 4 + TABLE_NAME.len() + 1;
    let mut attr = Vec::with_capacity(attr_len.next_multiple_of(4));
    attr.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    attr.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    attr.extend_from_slice(TABLE_NAME.as_bytes());
    attr.resize(attr_len.next_multiple_of(4), 0);
    nftables_request(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET, &attr)
}

/// Asks in the calling thread's namespace. The kernel answers a table it has with the table
/// (`NFT_MSG_NEWTABLE`) and then the ack; one it has not with `ENOENT`.
fn ask() -> Option<bool> {
    let mut sock = Socket::new(NETLINK_NETFILTER).ok()?;
    sock.bind_auto().ok()?;
    sock.connect(&SocketAddr::new(0, 0)).ok()?;
    let seq = 1;
    sock.send(&request(seq), 0).ok()?;
    let mut found = false;
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    loop {
        buf.clear();
        let n = sock.recv(&mut buf, 0).ok()?.min(buf.len());
        match answer(&buf[..n], seq, &mut found) {
            Some(done) => return done,
            None if n == 0 => return None,
            None => continue,
        }
    }
}

/// Walks one datagram of answers: `Some(result)` at the ack or error ending them (`Some(None)`
/// for an error other than `ENOENT`), `None` to read on. Sets `found` at the table.
fn answer(d: &[u8], seq: u32, found: &mut bool) -> Option<Option<bool>> {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= d.len() {
        let h = &d[at..at + NLMSG_HDRLEN];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let got = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDRLEN || at + len > d.len() {
            return Some(None);
        }
        let payload = &d[at + NLMSG_HDRLEN..at + len];
        at += len.next_multiple_of(4);
        if got != seq {
            continue;
        }
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
            return Some(match code {
                0 => Some(*found),
                c if c == -libc::ENOENT => Some(false),
                _ => None,
            });
        }
        if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
            *found = true;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_inet_table_padded() {
        let r = request(7);
        assert_eq!(r.len() % 4, 0);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize, r.len());
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x0a01);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(r[16], NFPROTO_INET);
        let attr_len = u16::from_ne_bytes([r[20], r[21]]) as usize;
        assert_eq!(&r[24..20 + attr_len], b"netcfg\0");
    }

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    #[test]
    fn answers_are_read_to_their_ack() {
        let mut found = false;
        let table = message(0x0a00, 1, &[1, 0, 0, 0]);
        let ack = message(NLMSG_ERROR, 1, &0i32.to_ne_bytes());
        assert_eq!(answer(&[table.clone(), ack.clone()].concat(), 1, &mut found), Some(Some(true)));
        let mut found = false;
        assert_eq!(answer(&table, 1, &mut found), None, "the ack is still to come");
        assert_eq!(answer(&ack, 1, &mut found), Some(Some(true)));
        let mut found = false;
        let enoent = message(NLMSG_ERROR, 1, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(answer(&enoent, 1, &mut found), Some(Some(false)));
        let eperm = message(NLMSG_ERROR, 1, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(answer(&eperm, 1, &mut found), Some(None));
        // Another request's answers are passed over; a truncated message ends the walk.
        assert_eq!(answer(&[message(0x0a00, 9, &[]), enoent.clone()].concat(), 1, &mut found), Some(Some(false)));
        assert_eq!(answer(&table[..table.len() - 4], 1, &mut found), Some(None));
        for cut in 0..ack.len() {
            let _ = answer(&ack[..cut], 1, &mut found);
        }
    }
}
