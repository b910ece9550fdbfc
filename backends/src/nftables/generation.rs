//! Knowing that netcfg's table is unchanged without listing it: the namespace's nf_tables
//! ruleset generation (`NFT_MSG_GETGEN`), which the kernel bumps on every committed
//! transaction of any table in the namespace, remembered together with the digest of the
//! script netcfg's table was found equal to.
//!
//! A plan that lists the table and finds it equal to the planned script's canonical form
//! records `(namespace cookie, generation, SHA-256 of the script)` — only when the generation
//! read before the listing is the one read after it, so the listing shows the table at that
//! generation. A later plan that reads the same namespace (by its cookie, `SO_NETNS_COOKIE`,
//! never reused while the machine is up) at the same generation for the same script knows the
//! table is still what the listing showed: no `nft list`, no canonical form. Any other
//! difference (another generation: someone committed anything, by hand or by a racing tool;
//! another script; another boot; no cookie on an old kernel; no record) falls back to the full
//! listing, which also reports what differs.
//!
//! What it must not do: decide that a table differs (only the listing does that), or be
//! trusted across a namespace that was deleted and made anew (the cookie tells them apart).

use sha2::{Digest, Sha256};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where the records live: one file per namespace cookie, root's only (`runfs`).
pub const DIR: &str = "/run/netcfg/nft-generation";

/// Where a namespace's nf_tables stand: which namespace (its cookie) and its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    pub cookie: u64,
    pub id: u32,
}

/// The script's digest, as recorded.
pub fn digest(script: &str) -> String {
    Sha256::digest(script.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

use super::probe::NFNL_SUBSYS_NFTABLES;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The generation of the calling thread's namespace. `Ok(None)`: the kernel cannot say (no
/// namespace cookie, no nf_tables); the caller then lists the table as before.
pub fn read_current() -> io::Result<Option<Generation>> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut cookie).cast(), &mut len)
    };
    if rc != 0 || len as usize != std::mem::size_of::<u64>() {
        return Ok(None);
    }
    // Family AF_UNSPEC, no attributes.
    let req = super::probe::nftables_request(NFT_MSG_GETGEN, libc::NLM_F_REQUEST as u16, 1, 0, &[]);
    // SAFETY: the buffer is ours and its length is passed; the kernel is the destination
    // (a zeroed sockaddr_nl).
    let sent = unsafe {
        let mut to: libc::sockaddr_nl = std::mem::zeroed();
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: the buffer is ours and its length is passed.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(parse_newgen(&buf[..n as usize]).map(|id| Generation { cookie, id }))
}

/// The generation id in the kernel's `NFT_MSG_NEWGEN` answer (`None` for an error message,
/// e.g. a kernel without nf_tables).
fn parse_newgen(msg: &[u8]) -> Option<u32> {
    let u16_at = |i: usize| msg.get(i..i + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let len = msg.get(0..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
    if u16_at(4)? != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN || len > msg.len() {
        return None;
    }
    // Attributes after nlmsghdr (16) and nfgenmsg (4).
    let mut at = 20;
    while at + 4 <= len {
        let alen = u16_at(at)? as usize;
        let kind = u16_at(at + 2)? & 0x3fff;
        if alen < 4 || at + alen > len {
            return None;
        }
        if kind == NFTA_GEN_ID && alen >= 8 {
            let b = &msg[at + 4..at + 8];
            return Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        }
        at += (alen + 3) & !3;
    }
    None
}

/// The machine's boot: a record from another boot is never matched (cookies restart).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

fn record_path(dir: &Path, cookie: u64) -> PathBuf {
    dir.join(format!("{cookie:016x}"))
}

/// Whether `generation` is the one recorded for this namespace with this script's digest.
pub fn unchanged(generation: Generation, script_digest: &str) -> bool {
    let Some(boot) = boot_id() else { return false };
    let Ok(Some(text)) = crate::runfs::read(&record_path(Path::new(DIR), generation.cookie)) else { return false };
    text == record_text(&boot, generation, script_digest)
}

/// Remembers that at `generation` netcfg's table was listed equal to the script of `script_digest`.
/// A record that cannot be written only costs the next plan a listing.
pub fn remember(generation: Generation, script_digest: &str) {
    let Some(boot) = boot_id() else { return };
    let text = record_text(&boot, generation, script_digest);
    let path = record_path(Path::new(DIR), generation.cookie);
    if crate::runfs::read(&path).ok().flatten().as_deref() != Some(text.as_str()) {
        let _ = crate::runfs::write_atomic(&path, text.as_bytes());
    }
}

fn record_text(boot: &str, g: Generation, script_digest: &str) -> String {
    format!("boot {boot}\ngeneration {}\nscript {script_digest}\n", g.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_id_is_read_from_a_newgen_answer_and_errors_give_none() {
        let mut msg = vec![0u8; 16 + 4 + 8];
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN).to_ne_bytes());
        msg[20..22].copy_from_slice(&8u16.to_ne_bytes());
        msg[22..24].copy_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        msg[24..28].copy_from_slice(&4711u32.to_be_bytes());
        assert_eq!(parse_newgen(&msg), Some(4711));
        let mut err = msg.clone();
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        assert_eq!(parse_newgen(&err), None);
        assert_eq!(parse_newgen(&msg[..10]), None);
    }

    #[test]
    fn a_record_matches_only_its_boot_generation_and_script() {
        let g = Generation { cookie: 7, id: 3 };
        let text = record_text("b", g, "d");
        assert_eq!(text, record_text("b", Generation { cookie: 8, id: 3 }, "d"), "the cookie is the file name");
        assert_ne!(text, record_text("b", Generation { cookie: 7, id: 4 }, "d"));
        assert_ne!(text, record_text("b", g, "e"));
        assert_ne!(text, record_text("c", g, "d"));
    }
}
