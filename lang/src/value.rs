//! Micro-grammars for values inside KDL strings: CIDRs, IPs, MACs, ports, endpoints, sysctl paths,
//! interface names. Each parser works on the string's text and, on failure, says which characters
//! are wrong (a byte range inside the text) so the diagnostic can point at exactly them.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a value does not parse: the byte range inside the value text, a message and a help line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    pub start: usize,
    pub end: usize,
    pub message: String,
    pub help: Option<String>,
}

impl ValueError {
    fn new(start: usize, end: usize, message: impl Into<String>) -> ValueError {
        ValueError { start, end, message: message.into(), help: None }
    }

    fn whole(text: &str, message: impl Into<String>) -> ValueError {
        ValueError::new(0, text.len(), message)
    }

    fn help(mut self, help: impl Into<String>) -> ValueError {
        self.help = Some(help.into());
        self
    }
}

/// A dotted-quad IPv4 address as it is usually written (`10.0.0.1`), read in one pass; `None`
/// for anything else, which the standard parser then reads (it tries IPv4, then IPv6, and was
/// a tenth of reading a firewall rule). Accepts exactly what the standard parser accepts of
/// this form: one to three digits per octet, no leading zero, at most 255.
fn plain_ipv4(text: &str) -> Option<IpAddr> {
    let mut octets = [0u8; 4];
    // The octet being read: its index, value and digits so far.
    let (mut i, mut v, mut digits) = (0, 0u32, 0usize);
    // An octet is one to three digits without a leading zero (`v` at least the least value
    // with that many digits) and at most 255.
    let octet = |v: u32, digits: usize| match digits {
        1..=3 if v >= [0, 0, 10, 100][digits] => u8::try_from(v).ok(),
        _ => None,
    };
    for &c in text.as_bytes() {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            // Wrapping: a long run of digits is refused by `octet` once it ends.
            v = v.wrapping_mul(10).wrapping_add(u32::from(d));
            digits += 1;
        } else if c == b'.' && i < 3 {
            octets[i] = octet(v, digits)?;
            (i, v, digits) = (i + 1, 0, 0);
        } else {
            return None;
        }
    }
    if i != 3 {
        return None;
    }
    octets[3] = octet(v, digits)?;
    Some(IpAddr::from(octets))
}

pub fn parse_ip(text: &str) -> Result<IpAddr, ValueError> {
    if let Some(addr) = plain_ipv4(text) {
        return Ok(addr);
    }
    IpAddr::from_str(text).map_err(|_| {
        let e = ValueError::whole(text, format!("`{text}` is not an IP address"));
        if text.contains('/') {
            e.help("write the address without a prefix length here")
        } else {
            e.help("write an IPv4 address like `10.0.0.1` or an IPv6 address like `fd00::1`")
        }
    })
}

fn split_prefix(text: &str) -> Result<(IpAddr, u8), ValueError> {
    let Some(slash) = text.find('/') else {
        return Err(ValueError::whole(text, format!("`{text}` has no prefix length"))
            .help("write it as address/prefix, e.g. `10.0.0.1/24`"));
    };
    split_at_slash(text, slash)
}

/// `split_prefix` with the `/` found already (at byte `slash`).
fn split_at_slash(text: &str, slash: usize) -> Result<(IpAddr, u8), ValueError> {
    let (addr_text, prefix_text) = (&text[..slash], &text[slash + 1..]);
    let addr = plain_ipv4(addr_text).map_or_else(|| IpAddr::from_str(addr_text), Ok).map_err(|_| {
        ValueError::new(0, slash, format!("`{addr_text}` is not an IP address"))
            .help("write an IPv4 address like `10.0.0.1` or an IPv6 address like `fd00::1`")
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix_text.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
        ValueError::new(slash + 1, text.len(), format!("`{prefix_text}` is not a prefix length"))
            .help(format!("a prefix length is a number from 0 to {max}"))
    })?;
    Ok((addr, prefix))
}

/// An interface address: the host address and the prefix length of its subnet (`10.0.0.5/24`).
pub fn parse_if_addr(text: &str) -> Result<IpNet, ValueError> {
    let (addr, prefix) = split_prefix(text)?;
    Ok(IpNet::new(addr, prefix).expect("prefix checked"))
}

/// A network: host bits must be zero (`10.0.0.0/24`). A bare address is a host network (/32, /128).
pub fn parse_net(text: &str) -> Result<IpNet, ValueError> {
    // The common case, a single address, without looking for a `/` first.
    if let Some(addr) = plain_ipv4(text) {
        return Ok(IpNet::from(addr));
    }
    // A byte search: `find` costs more than the rest of a short CIDR's parse.
    let Some(slash) = text.bytes().position(|b| b == b'/') else {
        let addr = parse_ip(text)?;
        return Ok(IpNet::from(addr));
    };
    let (addr, prefix) = split_at_slash(text, slash)?;
    let net = IpNet::new(addr, prefix).expect("prefix checked");
    if net.trunc() != net {
        return Err(ValueError::new(0, slash, format!("`{text}` has host bits set"))
            .help(format!("the network is `{}`", net.trunc())));
    }
    Ok(net)
}

/// A MAC address, six colon-separated hex octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

pub fn parse_mac(text: &str) -> Result<Mac, ValueError> {
    let mut out = [0u8; 6];
    let mut pos = 0;
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(ValueError::whole(text, format!("`{text}` is not a MAC address"))
            .help("write six hex octets separated by colons, e.g. `0a:58:a9:fe:ac:0f`"));
    }
    for (i, part) in parts.iter().enumerate() {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValueError::new(pos, pos + part.len(), format!("`{part}` is not a hex octet"))
                .help("each octet is two hex digits, e.g. `0a`"));
        }
        out[i] = u8::from_str_radix(part, 16).expect("hex checked");
        pos += part.len() + 1;
    }
    if out[0] & 1 == 1 {
        return Err(ValueError::new(0, 2, format!("`{text}` is a multicast MAC address"))
            .help("a link or neighbour address must be unicast: the first octet must be even"));
    }
    Ok(Mac(out))
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn single(port: u16) -> PortRange {
        PortRange { lo: port, hi: port }
    }

    pub fn contains(&self, other: &PortRange) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// A non-empty list of port ranges: `80`, `80,443`, `8000-8100`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSet(pub smallvec::SmallVec<[PortRange; 4]>);

impl PortSet {
    /// True when every port of `other` is in `self`.
    pub fn covers(&self, other: &PortSet) -> bool {
        other.0.iter().all(|o| {
            // Ranges in a set are sorted and merged, so one range must hold `o` whole.
            self.0.iter().any(|s| s.contains(o))
        })
    }

    pub fn overlaps(&self, other: &PortSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

pub fn parse_port(text: &str) -> Result<u16, ValueError> {
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(ValueError::whole(text, format!("`{text}` is not a port")).help("a port is a number from 1 to 65535")),
    }
}

pub fn parse_port_set(text: &str) -> Result<PortSet, ValueError> {
    // One port (the common case): no list to split, sort and merge.
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(PortSet(smallvec::smallvec![PortRange::single(parse_port(text)?)]));
    }
    let mut ranges = Vec::new();
    let mut pos = 0;
    for part in text.split(',') {
        let trimmed = part.trim();
        let lead = part.len() - part.trim_start().len();
        let at = |e: ValueError| ValueError { start: pos + lead + e.start, end: pos + lead + e.end, ..e };
        let range = match trimmed.split_once('-') {
            Some((lo, hi)) => {
                let lo_p = parse_port(lo).map_err(at)?;
                let hi_p = parse_port(hi)
                    .map_err(|e| ValueError { start: e.start + lo.len() + 1, end: e.end + lo.len() + 1, ..e })
                    .map_err(at)?;
                if lo_p > hi_p {
                    return Err(at(ValueError::whole(trimmed, format!("`{trimmed}` is an empty range"))
                        .help(format!("write the lower port first: `{hi_p}-{lo_p}`"))));
                }
                PortRange { lo: lo_p, hi: hi_p }
            }
            None => PortRange::single(parse_port(trimmed).map_err(at)?),
        };
        ranges.push(range);
        pos += part.len() + 1;
    }
    ranges.sort();
    let mut merged: Vec<PortRange> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(r.lo) <= u32::from(last.hi) + 1 => last.hi = last.hi.max(r.hi),
            _ => merged.push(r),
        }
    }
    Ok(PortSet(merged.into_iter().collect()))
}

/// A VLAN id of a bridge port, 1..=4094 (0 and 4095 are reserved by 802.1Q).
pub fn parse_vlan_id(text: &str) -> Result<u16, ValueError> {
    match text.parse::<u32>() {
        Ok(v) if (1..=4094).contains(&v) => Ok(v as u16),
        _ => Err(ValueError::whole(text, format!("`{text}` is not a VLAN id"))
            .help("a VLAN id is a number from 1 to 4094 (0 and 4095 are reserved)")),
    }
}

/// A set of VLAN ids: a comma-separated list of ids and inclusive ranges, `"10,20-30"`.
pub fn parse_vlan_list(text: &str) -> Result<std::collections::BTreeSet<u16>, ValueError> {
    let mut out = std::collections::BTreeSet::new();
    let mut pos = 0;
    for part in text.split(',') {
        let trimmed = part.trim();
        let lead = part.len() - part.trim_start().len();
        let at = |e: ValueError| ValueError { start: pos + lead + e.start, end: pos + lead + e.end, ..e };
        match trimmed.split_once('-') {
            Some((lo, hi)) => {
                let lo_v = parse_vlan_id(lo).map_err(at)?;
                let hi_v = parse_vlan_id(hi)
                    .map_err(|e| ValueError { start: e.start + lo.len() + 1, end: e.end + lo.len() + 1, ..e })
                    .map_err(at)?;
                if lo_v > hi_v {
                    return Err(at(ValueError::whole(trimmed, format!("`{trimmed}` is an empty range"))
                        .help(format!("write the lower VLAN id first: `{hi_v}-{lo_v}`"))));
                }
                out.extend(lo_v..=hi_v);
            }
            None => {
                out.insert(parse_vlan_id(trimmed).map_err(at)?);
            }
        }
        pos += part.len() + 1;
    }
    Ok(out)
}

/// One inclusive port range, `80` or `1000-2000` (a policy rule's `sport`/`dport`, where the
/// kernel keeps one range per rule; an SNAT's `ports`).
pub fn parse_port_range(text: &str) -> Result<(u16, u16), ValueError> {
    let set = parse_port_set(text)?;
    match set.0.as_slice() {
        [r] if !text.contains(',') => Ok((r.lo, r.hi)),
        _ => Err(ValueError::whole(text, format!("`{text}` is not one port range"))
            .help("write one range, like `1000-2000` (a policy rule takes one range: one `rule` per range)")),
    }
}

/// A packet or connection mark, with the bits it is about: firewall rules match and set it,
/// policy routing rules (`fwmark`) match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub value: u32,
    /// `None`: all 32 bits.
    pub mask: Option<u32>,
}

impl Mark {
    /// The mask with all bits for a mark without one.
    pub fn mask_or_all(&self) -> u32 {
        self.mask.unwrap_or(u32::MAX)
    }
}

/// A mark: a 32-bit number (decimal or `0x` hexadecimal), optionally `/MASK`; a value with
/// bits outside its mask is refused (the kernel compares `mark & mask`).
pub fn parse_mark(text: &str) -> Result<Mark, ValueError> {
    fn number(text: &str, offset: usize, what: &str) -> Result<u32, ValueError> {
        let t = text.trim();
        let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => t.parse::<u32>(),
        };
        parsed.map_err(|_| {
            ValueError::new(offset, offset + text.len().max(1), format!("`{t}` is not {what}"))
                .help("a mark is a 32-bit number (`0x10` or `16`), optionally with a mask (`0x100/0xff00`)")
        })
    }
    match text.split_once('/') {
        Some((mark, mask)) => {
            let value = number(mark, 0, "a mark")?;
            let mask_v = number(mask, mark.len() + 1, "a mask")?;
            if value & !mask_v != 0 {
                return Err(ValueError::new(
                    0,
                    mark.len().max(1),
                    format!("mark `{mark}` has bits outside its mask `{mask}`"),
                )
                .help(format!("the mark within this mask is `{:#x}`", value & mask_v)));
            }
            Ok(Mark { value, mask: Some(mask_v) })
        }
        None => Ok(Mark { value: number(text, 0, "a mark")?, mask: None }),
    }
}

/// The longest timeout a dynamic set takes: a year. A ban meant to last longer is a set
/// without a timeout.
pub const MAX_TIMEOUT_SECS: u32 = 365 * 86400;

/// A duration in whole seconds: `90s`, `30m`, `1h`, `7d`, or a sequence of them (`1h30m`);
/// bare digits are seconds. From one second to [`MAX_TIMEOUT_SECS`].
pub fn parse_duration(text: &str) -> Result<u32, ValueError> {
    let help = "write a number and a unit (`s`, `m`, `h`, `d`), e.g. `90s`, `30m`, `1h30m`";
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u64>() {
            Ok(n) if (1..=u64::from(MAX_TIMEOUT_SECS)).contains(&n) => Ok(n as u32),
            _ => Err(ValueError::whole(text, format!("`{text}` is not between 1 second and 365 days")).help(help)),
        };
    }
    let (mut total, mut start, mut num) = (0u64, 0usize, None::<u64>);
    for (i, c) in text.char_indices() {
        if let Some(d) = c.to_digit(10) {
            num = Some(num.unwrap_or(0).saturating_mul(10).saturating_add(u64::from(d)));
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(ValueError::new(i, i + c.len_utf8(), format!("`{c}` is not a unit of time")).help(help)),
        };
        let Some(n) = num.take() else {
            return Err(ValueError::new(start, i + 1, "a unit without a number").help(help));
        };
        total = total.saturating_add(n.saturating_mul(unit));
        start = i + 1;
    }
    if num.is_some() || text.is_empty() {
        return Err(ValueError::new(start, text.len().max(start + 1), "a number without a unit").help(help));
    }
    if !(1..=u64::from(MAX_TIMEOUT_SECS)).contains(&total) {
        return Err(ValueError::whole(text, format!("`{text}` is not between 1 second and 365 days")).help(help));
    }
    Ok(total as u32)
}

/// `ip:port` or `[ipv6]:port`.
/// An address or a pool of them, `A` or `A-B` (one family, `A` ≤ `B`).
pub fn parse_ip_pool(text: &str) -> Result<(IpAddr, IpAddr), ValueError> {
    let Some((a, b)) = text.split_once('-') else {
        let ip = parse_ip(text)?;
        return Ok((ip, ip));
    };
    let first = parse_ip(a.trim())?;
    let last =
        parse_ip(b.trim()).map_err(|e| ValueError { start: e.start + a.len() + 1, end: e.end + a.len() + 1, ..e })?;
    if first.is_ipv4() != last.is_ipv4() {
        return Err(ValueError::whole(text, "a pool's two ends are of one family")
            .help("write `203.0.113.7-203.0.113.9` or `2001:db8::7-2001:db8::9`"));
    }
    if last < first {
        return Err(ValueError::whole(text, format!("the pool ends at `{last}`, before it starts"))
            .help(format!("write it `{last}-{first}`")));
    }
    Ok((first, last))
}

/// A WireGuard key: 32 bytes in base64 (44 characters, as `wg genkey` and `wg pubkey` print).
pub fn parse_wg_key(text: &str) -> Result<[u8; 32], ValueError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok();
    bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
        ValueError::whole(text, "not a WireGuard key")
            .help("a key is 44 characters of base64, as `wg pubkey` prints it")
    })
}

/// The base64 spelling of a WireGuard key.
pub fn wg_key_text(key: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A comma-separated list of networks (`"10.8.0.2/32,fd00:8::/64"`).
pub fn parse_net_list(text: &str) -> Result<Vec<IpNet>, ValueError> {
    let mut out = Vec::new();
    let mut at = 0;
    for part in text.split(',') {
        let lead = part.len() - part.trim_start().len();
        let item = part.trim();
        if item.is_empty() {
            return Err(ValueError::new(at, at + part.len().max(1), "an empty network in the list")
                .help("separate networks with single commas: `10.8.0.2/32,10.20.0.0/16`"));
        }
        out.push(parse_net(item).map_err(|e| ValueError {
            start: at + lead + e.start,
            end: at + lead + e.end,
            ..e
        })?);
        at += part.len() + 1;
    }
    Ok(out)
}

pub fn parse_endpoint(text: &str) -> Result<(IpAddr, u16), ValueError> {
    let (addr_text, addr_start, port_start) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find("]:").ok_or_else(|| {
            ValueError::whole(text, format!("`{text}` is not an address:port"))
                .help("write an IPv6 endpoint as `[fd00::5]:8080`")
        })?;
        (&rest[..close], 1, close + 3)
    } else {
        let colon = text.rfind(':').ok_or_else(|| {
            ValueError::whole(text, format!("`{text}` has no port"))
                .help("write it as address:port, e.g. `10.244.1.5:8080`")
        })?;
        if text[..colon].contains(':') {
            return Err(ValueError::whole(text, format!("`{text}` is ambiguous"))
                .help("put an IPv6 address in brackets: `[fd00::5]:8080`"));
        }
        (&text[..colon], 0, colon + 1)
    };
    let addr = plain_ipv4(addr_text).map_or_else(|| IpAddr::from_str(addr_text), Ok).map_err(|_| {
        ValueError::new(addr_start, addr_start + addr_text.len(), format!("`{addr_text}` is not an IP address"))
    })?;
    let port = parse_port(&text[port_start..]).map_err(|e| ValueError {
        start: e.start + port_start,
        end: e.end + port_start,
        ..e
    })?;
    Ok((addr, port))
}

/// Linux interface names: 1..=15 bytes is checked by the compiler (`interface-name-too-long`);
/// here what the kernel never accepts (empty, `.`/`..`, `/`, `:`, whitespace, NUL) and what
/// would not mean the name itself once in an nft rule:
///
/// - `*`: nft reads a trailing `*` in an interface name as a wildcard, so a link `br*` would
///   make `iif="br*"` admit `br0x`. netcfg refuses it rather than escape it (`"br\*"`): the
///   kernel allows `*` but no real setup needs it, a `*` in a spec is far more likely a wildcard
///   meant as one (which netcfg does not have), and a refusal reads the same on every nft version.
/// - quotes, backslashes, control characters: the name is a quoted nft string.
/// - anything but printable ASCII: the kernel takes any bytes, but names that render alike
///   (`eth0` with a Cyrillic `е`) are a review hazard, and nft, `ip` and logs differ on them.
pub fn parse_link_name(text: &str) -> Result<String, ValueError> {
    if text.is_empty() || text == "." || text == ".." {
        return Err(ValueError::whole(text, format!("`{text}` is not a valid interface name")));
    }
    // The common case in one pass: printable ASCII, none of the characters refused below.
    let plain = |b: u8| b.is_ascii_graphic() && !matches!(b, b'*' | b'/' | b':' | b'"' | b'\\' | b'\'');
    if text.bytes().all(plain) {
        return Ok(text.to_string());
    }
    let help = "use ASCII letters, digits and `-_.@+`; Linux interface names are up to 15 bytes";
    if let Some((i, c)) = text.char_indices().find(|(_, c)| *c == '*') {
        return Err(ValueError::new(i, i + c.len_utf8(), "interface names cannot contain `*`")
            .help("nft would read `*` as a wildcard; a rule names links exactly, a `zone` may hold a prefix pattern like `\"veth*\"`"));
    }
    if let Some((i, c)) = text.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(
            ValueError::new(i, i + c.len_utf8(), format!("interface names must be ASCII, found {c:?}")).help(help)
        );
    }
    // The kernel refuses `/`, `:` and whitespace.
    let bad = |c: char| matches!(c, '/' | ':' | '"' | '\\' | '\'') || c.is_whitespace() || c.is_control();
    if let Some((i, c)) = text.char_indices().find(|(_, c)| bad(*c)) {
        return Err(ValueError::new(i, i + c.len_utf8(), format!("interface names cannot contain {c:?}")).help(help));
    }
    Ok(text.to_string())
}

/// A zone's link pattern `PREFIX*`: every link whose name starts with `PREFIX`, the ones the spec
/// declares and the ones that appear at run time (container veths). Returns the prefix.
pub fn parse_link_pattern(text: &str) -> Result<String, ValueError> {
    let Some(prefix) = text.strip_suffix('*') else {
        return Err(
            ValueError::whole(text, "a link pattern ends with `*`").help("write the prefix and then `*`: `veth*`")
        );
    };
    if prefix.is_empty() {
        return Err(ValueError::whole(text, "`*` alone would match every link")
            .help("leave the zone out of the rule to match every link, or give a prefix like `veth*`"));
    }
    if prefix.len() > 14 {
        return Err(ValueError::new(14, prefix.len(), "a pattern's prefix is at most 14 bytes (interface names: 15)")
            .help("shorten the prefix: it only needs to tell these links from the others"));
    }
    parse_link_name(prefix)
}

/// Names of nodes, namespaces, zones, sets, services, templates: become file names (netns) and
/// nft identifiers, so they are restricted to a safe alphabet.
pub fn parse_name(text: &str) -> Result<String, ValueError> {
    if text.is_empty() {
        return Err(ValueError::whole(text, "a name cannot be empty"));
    }
    if let Some((i, c)) =
        text.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValueError::new(i, i + c.len_utf8(), format!("names cannot contain {c:?}"))
            .help("use letters, digits, `-`, `_` and `.`"));
    }
    if text.starts_with('.') {
        return Err(ValueError::new(0, 1, "names cannot start with `.`"));
    }
    if text.len() > 64 {
        return Err(ValueError::new(64, text.len(), "names are at most 64 bytes"));
    }
    Ok(text.to_string())
}

/// A sysctl path in dotted form under `net.`, e.g. `net.ipv4.conf.eth0.rp_filter`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysctlPath(pub String);

impl fmt::Display for SysctlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which links a per-link sysctl (`net.ipv{4,6}.conf.SCOPE.key`) is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfScope<'a> {
    /// `all`: every link (for some keys, combined with each link's own value).
    All,
    /// One link by name.
    Link(&'a str),
}

/// The sysctls netcfg itself sets or reasons about, each spelled here once.
impl SysctlPath {
    /// IPv4 (`net.ipv4.ip_forward`) or IPv6 (`net.ipv6.conf.all.forwarding`) forwarding.
    pub fn forwarding(family: crate::ast::Family) -> SysctlPath {
        match family {
            crate::ast::Family::Ipv4 => SysctlPath("net.ipv4.ip_forward".into()),
            crate::ast::Family::Ipv6 => SysctlPath::conf("ipv6", ConfScope::All, "forwarding"),
        }
    }

    /// Reverse-path filtering (IPv4 only: the kernel has no IPv6 `rp_filter`).
    pub fn rp_filter(scope: ConfScope) -> SysctlPath {
        SysctlPath::conf("ipv4", scope, "rp_filter")
    }

    /// Whether 127.0.0.0/8 may be routed to and from a link.
    pub fn route_localnet(scope: ConfScope) -> SysctlPath {
        SysctlPath::conf("ipv4", scope, "route_localnet")
    }

    /// Whether bridged IPv4 (`bridge-nf-call-iptables`) or IPv6 (`…-ip6tables`) frames pass the
    /// IP netfilter hooks.
    pub fn bridge_nf_call(family: crate::ast::Family) -> SysctlPath {
        match family {
            crate::ast::Family::Ipv4 => SysctlPath("net.bridge.bridge-nf-call-iptables".into()),
            crate::ast::Family::Ipv6 => SysctlPath("net.bridge.bridge-nf-call-ip6tables".into()),
        }
    }

    fn conf(family: &str, scope: ConfScope, key: &str) -> SysctlPath {
        let scope = match scope {
            ConfScope::All => "all",
            ConfScope::Link(name) => name,
        };
        SysctlPath(format!("net.{family}.conf.{scope}.{key}"))
    }

    /// `net.ipv{4,6}.{conf,neigh}.SCOPE.key` split into its family, group, scope (`all`,
    /// `default` or an interface name, which may itself contain dots) and key.
    fn per_interface(&self) -> Option<(&str, &str, &str, &str)> {
        let rest = self.0.strip_prefix("net.")?;
        let (family, rest) = rest.split_once('.')?;
        let (group, rest) = rest.split_once('.')?;
        let (scope, key) = rest.rsplit_once('.')?;
        (matches!(family, "ipv4" | "ipv6") && matches!(group, "conf" | "neigh")).then_some((family, group, scope, key))
    }

    /// The interface a per-interface sysctl is about (`net.ipv{4,6}.{conf,neigh}.IFACE.key`),
    /// `None` for namespace-wide ones and for `all` and `default`.
    pub fn interface(&self) -> Option<&str> {
        let (_, _, scope, _) = self.per_interface()?;
        (!matches!(scope, "all" | "default")).then_some(scope)
    }

    /// The file under `/proc/sys` (dots become slashes; the interface segment keeps its dots).
    pub fn proc_path(&self) -> String {
        match self.per_interface() {
            Some((family, group, scope, key)) => format!("/proc/sys/net/{family}/{group}/{scope}/{key}"),
            None => format!("/proc/sys/{}", self.0.replace('.', "/")),
        }
    }
}

pub fn parse_sysctl_path(text: &str) -> Result<SysctlPath, ValueError> {
    if !text.starts_with("net.") {
        return Err(ValueError::whole(text, format!("`{text}` is not a network sysctl"))
            .help("netcfg manages the per-namespace `net.*` sysctls only"));
    }
    let mut pos = 0;
    for seg in text.split('.') {
        if seg.is_empty() {
            return Err(ValueError::new(pos, pos + 1, "empty segment in sysctl path"));
        }
        if let Some((i, c)) =
            seg.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '@')))
        {
            return Err(ValueError::new(pos + i, pos + i + c.len_utf8(), format!("sysctl paths cannot contain {c:?}"))
                .help("write the path with dots, e.g. `net.ipv4.conf.eth0.rp_filter`"));
        }
        pos += seg.len() + 1;
    }
    Ok(SysctlPath(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_link_names_take_the_quick_path_only_when_nothing_is_refused() {
        for name in ["eth0", "br-lan", "v@x", "a.b_c+d"] {
            assert_eq!(parse_link_name(name).as_deref(), Ok(name));
        }
        for name in ["br*", "a b", "a/b", "a:b", "é", "a\"b", "a'b", "a\\b", "\t", ".", ".."] {
            assert!(parse_link_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn plain_ipv4_reads_what_the_standard_parser_reads() {
        let mut texts: Vec<String> = [
            "",
            ".",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.00",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3.999",
            "1.2.3.1000",
            "1.2.3.4/8",
            "+1.2.3.4",
            "1.2.3.-4",
            "1.2.3.4 ",
            "::1",
            "::ffff:1.2.3.4",
            "１.2.3.4",
            "1.2.3.0x4",
            "1e1.2.3.4",
            "010.1.1.1",
            "1.2.3.010",
            "1.2.3.4294967297",
            "4294967297.1.1.1",
            "1.2.3.0000000004",
        ]
        .map(String::from)
        .into();
        for a in [0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255] {
            texts.push(format!("{a}.{}.1.{a}", 255 - a));
        }
        for t in &texts {
            let std = IpAddr::from_str(t).ok();
            let plain = plain_ipv4(t);
            assert!(plain.is_none() || plain == std, "{t}: {plain:?} vs {std:?}");
            assert_eq!(parse_ip(t).ok(), std, "{t}");
            if !t.contains('/') {
                assert_eq!(parse_net(t).ok(), std.map(IpNet::from), "{t}");
            }
        }
        assert!(plain_ipv4("172.16.39.14").is_some());
    }

    #[test]
    fn vlan_lists() {
        let v = parse_vlan_list("10, 20-22,4094").unwrap();
        assert_eq!(v.into_iter().collect::<Vec<_>>(), vec![10, 20, 21, 22, 4094]);
        let e = parse_vlan_list("10,4095").unwrap_err();
        assert_eq!((e.start, e.end), (3, 7));
        let e = parse_vlan_list("1,30-20").unwrap_err();
        assert!(e.message.contains("empty range"), "{e:?}");
        assert!(parse_vlan_list("0").is_err());
        assert!(parse_vlan_id("4094").is_ok());
    }

    #[test]
    fn durations_are_seconds_with_units() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("7d"), Ok(7 * 86400));
        assert_eq!(parse_duration("3600"), Ok(3600));
        let e = parse_duration("1w").unwrap_err();
        assert_eq!((e.start, e.end), (1, 2));
        assert!(parse_duration("10").is_ok() && parse_duration("h").is_err() && parse_duration("5m3").is_err());
        assert!(parse_duration("0s").is_err() && parse_duration("400d").is_err() && parse_duration("").is_err());
    }

    #[test]
    fn pools_are_one_family_in_order() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(parse_ip_pool("203.0.113.7").unwrap(), (ip("203.0.113.7"), ip("203.0.113.7")));
        assert_eq!(parse_ip_pool("203.0.113.7-203.0.113.9").unwrap(), (ip("203.0.113.7"), ip("203.0.113.9")));
        assert!(parse_ip_pool("203.0.113.9-203.0.113.7").unwrap_err().message.contains("before it starts"));
        assert!(parse_ip_pool("203.0.113.7-2001:db8::1").unwrap_err().message.contains("one family"));
        let e = parse_ip_pool("203.0.113.7-203.0.113.x").unwrap_err();
        assert_eq!(&"203.0.113.7-203.0.113.x"[e.start..e.end], "203.0.113.x");
    }

    #[test]
    fn cidr_errors_point_at_the_bad_part() {
        let e = parse_if_addr("10.0.0.300/24").unwrap_err();
        assert_eq!((e.start, e.end), (0, 10));
        let e = parse_if_addr("10.0.0.3/33").unwrap_err();
        assert_eq!((e.start, e.end), (9, 11));
        let e = parse_net("10.0.0.3/24").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("the network is `10.0.0.0/24`"));
        assert_eq!(parse_net("10.0.0.3").unwrap().to_string(), "10.0.0.3/32");
        assert_eq!(parse_if_addr("fd00::1/64").unwrap().prefix_len(), 64);
    }

    #[test]
    fn port_sets_merge_and_locate_errors() {
        assert_eq!(parse_port_set("443, 80,81-90").unwrap().to_string(), "80-90,443");
        let e = parse_port_set("80,70000").unwrap_err();
        assert_eq!((e.start, e.end), (3, 8));
        let e = parse_port_set("80,90-x").unwrap_err();
        assert_eq!((e.start, e.end), (6, 7));
        assert!(parse_port_set("9-1").is_err());
        assert!(parse_port_set("0").is_err());
    }

    #[test]
    fn endpoints_and_macs() {
        assert_eq!(parse_endpoint("10.0.0.1:80").unwrap().1, 80);
        assert_eq!(parse_endpoint("[fd00::1]:8080").unwrap().0.to_string(), "fd00::1");
        assert!(parse_endpoint("fd00::1:80").is_err());
        let e = parse_endpoint("10.0.0.1:0").unwrap_err();
        assert_eq!((e.start, e.end), (9, 10));
        assert_eq!(parse_mac("0A:58:a9:fe:ac:0f").unwrap().to_string(), "0a:58:a9:fe:ac:0f");
        let e = parse_mac("0a:58:zz:fe:ac:0f").unwrap_err();
        assert_eq!((e.start, e.end), (6, 8));
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
    }

    #[test]
    fn names_and_sysctls() {
        assert!(parse_link_name("eth0").is_ok());
        assert_eq!(parse_link_name("et h0").unwrap_err().start, 2);
        for (bad, at) in [("br*", 2), ("*", 0), ("eth\u{435}0", 3), ("a/b", 1), ("..", 0), ("a\"b", 1)] {
            assert_eq!(parse_link_name(bad).unwrap_err().start, at, "{bad}");
        }
        assert!(parse_link_name("a$b#c@d+e%f").is_ok());
        assert!(parse_name("task-1").is_ok());
        assert!(parse_name("task;1").is_err());
        assert_eq!(
            parse_sysctl_path("net.ipv4.conf.eth0.100.rp_filter").unwrap().proc_path(),
            "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(parse_sysctl_path("net.ipv4.ip_forward").unwrap().proc_path(), "/proc/sys/net/ipv4/ip_forward");
        assert!(parse_sysctl_path("kernel.panic").is_err());
        assert_eq!(parse_sysctl_path("net.ipv4..x").unwrap_err().start, 9);
    }
}
