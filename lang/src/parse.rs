//! KDL text to the typed AST. Parsing never fails: it returns what it could read plus
//! diagnostics, and follows `include`s (relative to the including file) through a [`Loader`],
//! which decides which files may be read (see `loader.rs`).

use crate::ast::*;
use crate::code;
use crate::diagnostic::Diagnostic;
use crate::kdl::Node as KdlNode;
use crate::links::{Keyword, LINK_KEYWORDS};
pub use crate::loader::{FsLoader, LoadError, Loader};
use crate::reader::{Cx, Reader, Val};
use crate::source::{FileId, SourceMap, Span, Spanned};
use crate::value::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The result of parsing: the AST of all files, the files themselves, and every diagnostic.
#[derive(Debug, Default)]
pub struct Parsed {
    pub spec: Spec,
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read, by the identity its [`Loader`] gave it (its canonical path).
    read: HashMap<PathBuf, FileId>,
    key_of: HashMap<FileId, PathBuf>,
}

impl Parsed {
    /// Adds one top-level file (already read) and everything it includes.
    pub fn add_file(&mut self, name: String, path: Option<PathBuf>, bytes: &[u8], loader: &mut dyn Loader) -> FileId {
        let key = path.as_deref().and_then(|p| loader.resolve(p).ok());
        let file = self.add_text(name, path, bytes);
        if let Some(key) = key {
            self.read.insert(key.clone(), file);
            self.key_of.insert(file, key);
        }
        self.parse_file(file, loader, &mut Vec::new());
        file
    }

    /// Whether the file with this identity (see [`Loader::resolve`]) has been read.
    pub fn has_read(&self, key: &Path) -> bool {
        self.read.contains_key(key)
    }

    fn add_text(&mut self, name: String, path: Option<PathBuf>, bytes: &[u8]) -> FileId {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.sources.add(name, path, text),
            Err(e) => {
                let valid = e.valid_up_to();
                let text = String::from_utf8_lossy(bytes).into_owned();
                let file = self.sources.add(name, path, text);
                self.diagnostics.push(
                    // The lossy text holds U+FFFD (3 bytes) where the first bad byte was.
                    Diagnostic::error(
                        code::INVALID_UTF8,
                        Span::new(file, valid, valid + 3),
                        "the file is not valid UTF-8",
                    )
                    .with_label("invalid byte here")
                    .with_help("save the spec as UTF-8"),
                );
                file
            }
        }
    }

    fn parse_file(&mut self, file: FileId, loader: &mut dyn Loader, stack: &mut Vec<PathBuf>) {
        if self.diagnostics.iter().any(|d| d.code == code::INVALID_UTF8 && d.primary.span.file == file) {
            return;
        }
        let text = self.sources.get(file).text.clone();
        // Syntax errors do not stop the file: what could be read is read (invariant 1).
        let (doc, syntax_errors) = crate::kdl::parse(&text, file);
        self.diagnostics.extend(syntax_errors);
        let mut includes = Vec::new();
        let dir = self.sources.get(file).path.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf);
        {
            let mut cx = Cx { diags: &mut self.diagnostics, dir };
            for node in &doc.nodes {
                let mut r = Reader::new(&mut cx, node);
                match r.keyword() {
                    "node" => {
                        // The body is read even under a bad name, for its own diagnostics.
                        let name = name_arg(&mut cx, &mut r, "a node name");
                        let body = parse_body(&mut cx, &mut r, BodyKind::Node);
                        if let Some(name) = name {
                            self.spec.nodes.push(NodeDecl { name, body, span: r.span });
                        }
                    }
                    "template" => {
                        let name = name_arg(&mut cx, &mut r, "a template name");
                        let body = parse_body(&mut cx, &mut r, BodyKind::Template);
                        if let Some(name) = name {
                            self.spec.templates.push(TemplateDecl { name, body, span: r.span });
                        }
                    }
                    "include" => {
                        if let Some(path) =
                            r.arg(&mut cx, 0, "a file path").and_then(|v| v.string(&mut cx, "the include path"))
                        {
                            includes.push(path);
                        }
                    }
                    other => {
                        let d = cx.error(
                            code::UNKNOWN_NODE,
                            r.name_span,
                            format!("`{other}` is not allowed at the top level"),
                        );
                        d.help = Some(match crate::diagnostic::closest(other, ["node", "template", "include"]) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => "a spec file holds `node`, `template` and `include` nodes".into(),
                        });
                        continue;
                    }
                }
                r.finish(&mut cx);
            }
        }
        let base = self.sources.get(file).path.clone();
        let key = self.key_of.get(&file).cloned();
        if let Some(k) = &key {
            stack.push(k.clone());
        }
        for inc in includes {
            self.include(&base, &inc, loader, stack);
        }
        if key.is_some() {
            stack.pop();
        }
    }

    /// Follows one `include`: refused, missing and cyclic includes are one diagnostic each on
    /// the include's path, and say nothing of what the file holds.
    fn include(
        &mut self,
        base: &Option<PathBuf>,
        inc: &Spanned<String>,
        loader: &mut dyn Loader,
        stack: &mut Vec<PathBuf>,
    ) {
        let path = match base {
            Some(b) => b.parent().unwrap_or(Path::new(".")).join(&inc.value),
            None => PathBuf::from(&inc.value),
        };
        let refused = |e: LoadError| match e {
            LoadError::Refused(r) => {
                Diagnostic::error(code::INCLUDE_REFUSED, inc.span, format!("`{}` {r}", path.display()))
                    .with_label("not read")
                    .with_help(r.help())
            }
            LoadError::Io(_) => Diagnostic::error(
                crate::code::INCLUDE_FAILED,
                inc.span,
                format!("cannot read `{}`: {e}", path.display()),
            )
            .with_help("include paths are relative to the including file"),
        };
        let key = match loader.resolve(&path) {
            Ok(key) => key,
            Err(e) => {
                self.diagnostics.push(refused(e));
                return;
            }
        };
        if stack.contains(&key) {
            self.diagnostics.push(
                Diagnostic::error(crate::code::INCLUDE_CYCLE, inc.span, format!("`{}` includes itself", inc.value))
                    .with_help("remove the include that closes the cycle"),
            );
            return;
        }
        if self.read.contains_key(&key) {
            // Already read through another include: its nodes are in the spec once.
            return;
        }
        if stack.len() >= crate::loader::MAX_INCLUDE_DEPTH {
            self.diagnostics.push(refused(LoadError::Refused(crate::loader::Refusal::TooDeep)));
            return;
        }
        match loader.read(&key) {
            Ok(bytes) => {
                let f = self.add_text(path.display().to_string(), Some(path.clone()), &bytes);
                self.read.insert(key.clone(), f);
                self.key_of.insert(f, key);
                self.parse_file(f, loader, stack);
            }
            Err(e) => self.diagnostics.push(refused(e)),
        }
    }
}

/// Parses one in-memory spec (tests, stdin). Includes resolve through `loader`.
pub fn parse_str(name: &str, text: &str) -> Parsed {
    struct NoIncludes;
    impl Loader for NoIncludes {
        fn resolve(&mut self, path: &Path) -> Result<PathBuf, LoadError> {
            Err(LoadError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no file {}", path.display()))))
        }
        fn read(&mut self, path: &Path) -> Result<Vec<u8>, LoadError> {
            self.resolve(path).map(|_| Vec::new())
        }
    }
    let mut parsed = Parsed::default();
    parsed.add_file(name.to_string(), None, text.as_bytes(), &mut NoIncludes);
    parsed
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Node,
    Netns,
    Template,
}

fn name_arg(cx: &mut Cx, r: &mut Reader, what: &str) -> Option<Spanned<String>> {
    r.arg(cx, 0, what).and_then(|v| v.parse(cx, "name", parse_name))
}

fn link_name(cx: &mut Cx, v: Option<Val>) -> Option<Spanned<String>> {
    v.and_then(|v| v.parse(cx, "interface name", parse_link_name))
}

/// The body of a node, netns or template: one pass over its children, dispatching on keyword.
fn parse_body(cx: &mut Cx, r: &mut Reader, kind: BodyKind) -> NsBody {
    let mut body = NsBody::default();
    for child in r.all_children() {
        let mut c = Reader::new(cx, child);
        match c.keyword() {
            "use" => {
                for v in c.rest_args(0) {
                    if let Some(n) = v.parse(cx, "template name", parse_name) {
                        body.uses.push(n);
                    }
                }
                if body.uses.is_empty() {
                    c.arg(cx, 0, "a template name");
                }
            }
            k if LINK_KEYWORDS.contains(&k) => match parse_link(cx, &mut c) {
                Ok(link) => body.links.push(link),
                Err(Some(name)) => body.unbuilt_links.push(name),
                Err(None) => {}
            },
            "loopback" => body.loopback.extend(parse_addresses(cx, &mut c)),
            "route" => body.routes.extend(parse_route(cx, &mut c)),
            "table" => body.tables.extend(parse_table(cx, &mut c)),
            "rule" => body.rules.extend(parse_policy_rule(cx, &mut c)),
            "neighbor" => body.neighbors.extend(parse_neighbor(cx, &mut c)),
            "sysctl" => body.sysctls.extend(parse_sysctl(cx, &mut c)),
            "forwarding" => body.forwarding.push(parse_forwarding(cx, &mut c)),
            "rp-filter" => {
                if let Some(v) = c.arg(cx, 0, "a mode").and_then(|v| rp_filter(cx, v)) {
                    set_once(cx, &mut body.rp_filter, v, "`rp-filter`");
                }
            }
            "bridge-netfilter" => {
                if let Some(v) = c.arg(cx, 0, "#true or #false").and_then(|v| v.bool(cx, "bridge-netfilter")) {
                    set_once(cx, &mut body.bridge_netfilter, v, "`bridge-netfilter`");
                }
            }
            "netns" => {
                if kind == BodyKind::Netns {
                    cx.error(code::UNKNOWN_NODE, c.name_span, "a `netns` cannot contain another `netns`").help =
                        Some("declare every namespace directly inside its `node`".into());
                    continue;
                }
                if let Some(name) = name_arg(cx, &mut c, "a namespace name") {
                    if name.value == "host" {
                        cx.error(code::INVALID_VALUE, name.span, "`host` is reserved for the node's own namespace")
                            .help = Some("pick another name; refer to the node's namespace as `@host`".into());
                    }
                    let inner = parse_body(cx, &mut c, BodyKind::Netns);
                    body.netns.push(NetnsDecl { name, body: inner, span: c.span });
                }
            }
            "firewall" => body.firewalls.push(parse_firewall(cx, &mut c)),
            "service" => body.services.extend(parse_service(cx, &mut c)),
            "masquerade" => body.masquerades.push(MasqueradeDecl {
                from: c.prop(cx, "from").and_then(|v| addr_match(cx, v)),
                out: {
                    let v = c.prop(cx, "out");
                    link_name(cx, v)
                },
                span: c.span,
            }),
            "snat" => {
                let from = c.prop(cx, "from").and_then(|v| addr_match(cx, v));
                let out = {
                    let v = c.prop(cx, "out");
                    link_name(cx, v)
                };
                if let Some(to) = c.required(cx, "to", "\"203.0.113.7\"").and_then(|v| v.parse(cx, "address", parse_ip))
                {
                    body.snats.push(SnatDecl { from, out, to, span: c.span });
                }
            }
            "redirect" => body.redirects.extend(parse_redirect(cx, &mut c)),
            "listen" => body.listeners.extend(parse_listen(cx, &mut c)),
            other => {
                let known = LINK_KEYWORDS.iter().copied().chain([
                    "use",
                    "loopback",
                    "route",
                    "table",
                    "rule",
                    "neighbor",
                    "sysctl",
                    "forwarding",
                    "rp-filter",
                    "bridge-netfilter",
                    "netns",
                    "firewall",
                    "service",
                    "masquerade",
                    "snat",
                    "redirect",
                    "listen",
                ]);
                let d = cx.error(
                    code::UNKNOWN_NODE,
                    c.name_span,
                    format!("`{other}` is not allowed inside `{}`", r.keyword()),
                );
                d.help = Some(match crate::diagnostic::closest(other, known) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => "see spec.md for what a node body can hold".into(),
                });
                continue;
            }
        }
        c.finish(cx);
    }
    body
}

/// Stores a setting that may be given once per block; a second one is an error, not a silent
/// override.
fn set_once<T>(cx: &mut Cx, slot: &mut Option<Spanned<T>>, value: Spanned<T>, what: &str) {
    match slot {
        Some(first) => {
            let first = first.span;
            let d = cx.error(code::DUPLICATE_PROPERTY, value.span, format!("{what} is set twice"));
            d.secondary.push(crate::diagnostic::Label { span: first, message: "first set here".into() });
            d.help = Some("keep one of them".into());
        }
        None => *slot = Some(value),
    }
}

/// One of an enumerated option's keywords.
fn kw<T: Keyword>(cx: &mut Cx, v: Val) -> Option<Spanned<T>> {
    v.keyword(cx, T::WHAT, T::KEYWORDS)
}

fn rp_filter(cx: &mut Cx, v: Val) -> Option<Spanned<RpFilter>> {
    v.keyword(cx, "rp-filter mode", &[("strict", RpFilter::Strict), ("loose", RpFilter::Loose), ("off", RpFilter::Off)])
}

/// A link, or the name of one that could not be built (already reported), when it has one.
fn parse_link(cx: &mut Cx, r: &mut Reader) -> Result<LinkDecl, Option<Spanned<String>>> {
    let keyword = r.keyword();
    let name = {
        let v = r.arg(cx, 0, "an interface name");
        link_name(cx, v)
    };
    // A kind that cannot be built still lets the rest of the link be read below, so a missing
    // `peer` or `vni` is one finding, not also "not allowed" for every other property.
    let kind = match keyword {
        "ethernet" => Some(LinkKindDecl::Ethernet),
        "bridge" => {
            let netfilter = r.prop(cx, "netfilter").and_then(|v| v.bool(cx, "netfilter"));
            let seconds = |cx: &mut Cx, r: &mut Reader, key: &'static str, min: i128, max: i128| {
                r.prop(cx, key).and_then(|v| v.int(cx, key, min, max)).map(|v| v.value as u32 * 100)
            };
            let options = BridgeOptions {
                stp: r.prop(cx, "stp").and_then(|v| v.bool(cx, "stp")).map(|v| v.value),
                forward_delay: seconds(cx, r, "forward-delay", 2, 30),
                ageing: seconds(cx, r, "ageing", 0, 1_000_000),
                priority: r.prop(cx, "priority").and_then(|v| v.int(cx, "priority", 0, 65535)).map(|v| v.value as u16),
                vlan_filtering: r
                    .prop(cx, "vlan-filtering")
                    .and_then(|v| v.bool(cx, "vlan-filtering"))
                    .map(|v| v.value),
                default_pvid: r
                    .prop(cx, "default-pvid")
                    .and_then(|v| v.int(cx, "default-pvid", 0, 4094))
                    .map(|v| v.value as u16),
                multicast_snooping: r
                    .prop(cx, "multicast-snooping")
                    .and_then(|v| v.bool(cx, "multicast-snooping"))
                    .map(|v| v.value),
            };
            Some(LinkKindDecl::Bridge { netfilter, options })
        }
        "veth" => 'veth: {
            let peers = r.children("peer");
            let Some(first) = peers.first() else {
                cx.error(code::MISSING_PROPERTY, r.head_span(), "`veth` needs a `peer`").help =
                    Some("add a child `peer \"NAME\"` (with `netns=\"…\"` when it lives in another namespace)".into());
                break 'veth None;
            };
            for extra in &peers[1..] {
                cx.error(code::DUPLICATE_PROPERTY, extra.name.span, "a veth has exactly one peer").help =
                    Some("remove the extra `peer`".into());
            }
            let mut p = Reader::new(cx, first);
            let peer_netns = p.prop(cx, "netns").and_then(|v| {
                let s = v.string(cx, "netns")?;
                if s.value == "@host" {
                    Some(s)
                } else {
                    v.parse(cx, "namespace name", parse_name)
                }
            });
            let peer = parse_link(cx, &mut p);
            p.finish(cx);
            peer.ok().map(|peer| LinkKindDecl::Veth { peer: Box::new(peer), peer_netns })
        }
        "peer" => Some(LinkKindDecl::VethPeer),
        "vxlan" => {
            let vni = r.required(cx, "vni", "42").and_then(|v| v.int(cx, "vni", 0, 16_777_215));
            let local = r.prop(cx, "local").and_then(|v| v.parse(cx, "address", parse_ip));
            let remote = r.prop(cx, "remote").and_then(|v| v.parse(cx, "address", parse_ip));
            let group = r.prop(cx, "group").and_then(|v| v.parse(cx, "address", parse_ip));
            let dev = {
                let v = r.prop(cx, "dev");
                link_name(cx, v)
            };
            let port = r.prop(cx, "port").and_then(|v| v.parse(cx, "port", parse_port));
            let options = VxlanOptions {
                learning: r.prop(cx, "learning").and_then(|v| v.bool(cx, "learning")).map(|v| v.value),
                proxy: r.prop(cx, "proxy").and_then(|v| v.bool(cx, "proxy")).map(|v| v.value),
                ttl: r.prop(cx, "ttl").and_then(|v| v.int(cx, "ttl", 0, 255)).map(|v| v.value as u8),
            };
            vni.map(|vni| LinkKindDecl::Vxlan { vni: vni.map(|v| v as u32), local, remote, group, dev, port, options })
        }
        "macvlan" => {
            let parent = {
                let v = r.required(cx, "parent", "\"eth0\"");
                link_name(cx, v)
            };
            let mode = r.prop(cx, "mode").and_then(|v| {
                v.keyword(
                    cx,
                    "macvlan mode",
                    &[
                        ("bridge", MacvlanMode::Bridge),
                        ("private", MacvlanMode::Private),
                        ("vepa", MacvlanMode::Vepa),
                        ("passthru", MacvlanMode::Passthru),
                    ],
                )
            });
            parent.map(|parent| LinkKindDecl::Macvlan { parent, mode })
        }
        "dummy" => Some(LinkKindDecl::Dummy),
        "vlan" => {
            let parent = {
                let v = r.required(cx, "parent", "\"eth0\"");
                link_name(cx, v)
            };
            let id = r.required(cx, "id", "100").and_then(|v| v.int(cx, "VLAN id", 1, 4094));
            let protocol = r.prop(cx, "protocol").and_then(|v| kw::<VlanProtocol>(cx, v));
            match (parent, id) {
                (Some(parent), Some(id)) => Some(LinkKindDecl::Vlan { parent, id: id.map(|v| v as u16), protocol }),
                _ => None,
            }
        }
        "bond" => {
            let mode = r.prop(cx, "mode").and_then(|v| kw::<BondMode>(cx, v));
            let miimon = r.prop(cx, "miimon").and_then(|v| v.int(cx, "miimon", 0, i32::MAX as i128));
            let lacp_rate = r.prop(cx, "lacp-rate").and_then(|v| kw::<LacpRate>(cx, v));
            let xmit_hash_policy = r.prop(cx, "xmit-hash-policy").and_then(|v| kw::<XmitHashPolicy>(cx, v));
            let primary = {
                let v = r.prop(cx, "primary");
                link_name(cx, v)
            };
            let min_links = r.prop(cx, "min-links").and_then(|v| v.int(cx, "min-links", 0, i32::MAX as i128));
            if let (Some(rate), Some(m)) = (&lacp_rate, &mode) {
                if m.value != BondMode::Lacp {
                    cx.error(code::INVALID_VALUE, rate.span, "`lacp-rate` is for bonds in mode `802.3ad`").help = Some(
                        format!("remove `lacp-rate`, or set `mode=\"802.3ad\"` instead of `{}`", m.value.keyword()),
                    );
                }
            } else if let (Some(rate), None) = (&lacp_rate, &mode) {
                cx.error(code::INVALID_VALUE, rate.span, "`lacp-rate` is for bonds in mode `802.3ad`").help =
                    Some("add `mode=\"802.3ad\"` (the default mode is `balance-rr`)".into());
            }
            Some(LinkKindDecl::Bond(BondDecl {
                mode,
                miimon: miimon.map(|s| s.map(|v| v as u32)),
                lacp_rate,
                xmit_hash_policy,
                primary,
                min_links: min_links.map(|s| s.map(|v| v as u32)),
            }))
        }
        "vrf" => {
            let table = r.required(cx, "table", "10").and_then(|v| v.int(cx, "VRF table", 1, u32::MAX as i128));
            table.map(|t| LinkKindDecl::Vrf { table: t.map(|v| v as u32) })
        }
        "ipvlan" => {
            let parent = {
                let v = r.required(cx, "parent", "\"eth0\"");
                link_name(cx, v)
            };
            let mode = r.prop(cx, "mode").and_then(|v| kw::<IpvlanMode>(cx, v));
            parent.map(|parent| LinkKindDecl::Ipvlan { parent, mode })
        }
        "gre" | "ipip" | "sit" | "ip6tnl" => {
            let kind = TunnelKind::KEYWORDS.iter().find(|(k, _)| *k == keyword).map(|(_, t)| *t).expect("a tunnel");
            let family_ok = |cx: &mut Cx, a: Spanned<IpAddr>, what: &str| {
                if a.value.is_ipv6() == kind.outer_is_v6() {
                    Some(a)
                } else {
                    let want = if kind.outer_is_v6() { "IPv6" } else { "IPv4" };
                    cx.error(
                        code::INVALID_VALUE,
                        a.span,
                        format!("`{keyword}` runs over {want}: its {what} must be an {want} address"),
                    )
                    .help = Some(if kind.outer_is_v6() {
                        "use `gre`, `ipip` or `sit` for an IPv4 underlay".into()
                    } else {
                        "use `ip6tnl` for an IPv6 underlay".into()
                    });
                    None
                }
            };
            let remote = r.required(cx, "remote", "\"198.51.100.2\"").and_then(|v| v.parse(cx, "address", parse_ip));
            let remote = remote.and_then(|a| family_ok(cx, a, "`remote`"));
            let local = r.prop(cx, "local").and_then(|v| v.parse(cx, "address", parse_ip));
            let local = local.and_then(|a| family_ok(cx, a, "`local`"));
            let ttl = r.prop(cx, "ttl").and_then(|v| v.int(cx, "ttl", 0, 255)).map(|s| s.map(|v| v as u8));
            let key = if kind == TunnelKind::Gre {
                r.prop(cx, "key").and_then(|v| v.int(cx, "GRE key", 0, u32::MAX as i128)).map(|s| s.map(|v| v as u32))
            } else {
                None
            };
            let dev = {
                let v = r.prop(cx, "dev");
                link_name(cx, v)
            };
            remote.map(|remote| LinkKindDecl::Tunnel(TunnelDecl { kind, local, remote, ttl, key, dev }))
        }
        "wireguard" => parse_wireguard(cx, r).map(LinkKindDecl::Wireguard),
        _ => unreachable!("parse_link called for {keyword}"),
    };
    let mtu = r.prop(cx, "mtu").and_then(|v| v.int(cx, "mtu", 68, 65535)).map(|s| s.map(|v| v as u32));
    let mac = r.prop(cx, "mac").and_then(|v| v.parse(cx, "MAC address", parse_mac));
    let state = r
        .prop(cx, "state")
        .and_then(|v| v.keyword(cx, "link state", &[("up", LinkState::Up), ("down", LinkState::Down)]));
    let master = {
        let v = r.prop(cx, "master");
        link_name(cx, v)
    };
    let hairpin = r.prop(cx, "hairpin").and_then(|v| v.bool(cx, "hairpin"));
    let rp = r.prop(cx, "rp-filter").and_then(|v| rp_filter(cx, v));
    let options = LinkOptions {
        promisc: r.prop(cx, "promisc").and_then(|v| v.bool(cx, "promisc")),
        txqueuelen: r
            .prop(cx, "txqueuelen")
            .and_then(|v| v.int(cx, "txqueuelen", 0, u32::MAX as i128))
            .map(|s| s.map(|v| v as u32)),
        arp: r.prop(cx, "arp").and_then(|v| v.bool(cx, "arp")),
        port: PortOptions {
            cost: r.prop(cx, "port-cost").and_then(|v| v.int(cx, "port-cost", 1, 65535)).map(|v| v.value as u32),
            priority: r
                .prop(cx, "port-priority")
                .and_then(|v| v.int(cx, "port-priority", 0, 63))
                .map(|v| v.value as u16),
        },
    };
    let addresses = parse_addresses(cx, r);
    let Some(kind) = kind else { return Err(name) };
    let Some(name) = name else { return Err(None) };
    Ok(LinkDecl { name, kind, mtu, mac, state, master, hairpin, rp_filter: rp, options, addresses, span: r.span })
}

/// A file holding a secret, resolved against the directory of the spec file.
fn key_file(cx: &mut Cx, v: Val, what: &str) -> Option<Spanned<KeyFile>> {
    let s = v.string(cx, what)?;
    if s.value.is_empty() {
        cx.error(code::INVALID_VALUE, s.span, format!("{what} is empty")).help =
            Some("name a file readable only by root, e.g. `/etc/wireguard/wg0.key`".into());
        return None;
    }
    let path = match &cx.dir {
        Some(d) if !Path::new(&s.value).is_absolute() => d.join(&s.value).display().to_string(),
        _ => s.value.clone(),
    };
    Some(Spanned::new(KeyFile { written: s.value, path }, s.span))
}

fn parse_wireguard(cx: &mut Cx, r: &mut Reader) -> Option<WireguardDecl> {
    for secret in ["private-key", "preshared-key"] {
        if let Some(v) = r.prop(cx, if secret == "private-key" { "private-key" } else { "preshared-key" }) {
            cx.error(code::INVALID_VALUE, v.span, format!("a WireGuard `{secret}` is never written in the spec"))
                .help = Some(format!(
                "put it in a file only root can read (`wg genkey > wg0.key`) and name it with `{secret}-file=\"…\"`"
            ));
        }
    }
    let key = r.required(cx, "private-key-file", "\"/etc/wireguard/wg0.key\"");
    let private_key_file = key.and_then(|v| key_file(cx, v, "private-key-file"));
    let listen_port =
        r.prop(cx, "listen-port").and_then(|v| v.int(cx, "listen-port", 1, 65535)).map(|s| s.map(|v| v as u16));
    let fwmark =
        r.prop(cx, "fwmark").and_then(|v| v.int(cx, "fwmark", 0, u32::MAX as i128)).map(|s| s.map(|v| v as u32));
    let mut peers: Vec<WgPeerDecl> = Vec::new();
    for p in r.children("peer") {
        let mut pr = Reader::new(cx, p);
        let public_key = pr.required(cx, "public-key", "\"…=\"").and_then(|v| v.parse(cx, "public key", parse_wg_key));
        let endpoint = pr.prop(cx, "endpoint").and_then(|v| v.parse(cx, "endpoint", parse_endpoint));
        let allowed_ips = pr.prop(cx, "allowed-ips").and_then(|v| v.parse(cx, "allowed-ips", parse_net_list));
        let keepalive =
            pr.prop(cx, "keepalive").and_then(|v| v.int(cx, "keepalive", 0, 65535)).map(|s| s.map(|v| v as u16));
        if let Some(v) = pr.prop(cx, "preshared-key") {
            cx.error(code::INVALID_VALUE, v.span, "a WireGuard `preshared-key` is never written in the spec").help =
                Some("put it in a file only root can read (`wg genpsk > peer.psk`) and name it with `preshared-key-file=\"…\"`".into());
        }
        let preshared_key_file = pr.prop(cx, "preshared-key-file").and_then(|v| key_file(cx, v, "preshared-key-file"));
        if let Some(k) = &public_key {
            if let Some(first) = peers.iter().find(|q| q.public_key.value == k.value) {
                let first = first.public_key.span;
                let d = cx.error(code::DUPLICATE_PROPERTY, k.span, "this peer is already declared");
                d.secondary.push(crate::diagnostic::Label { span: first, message: "first declared here".into() });
                d.help = Some("merge the two `peer` nodes: one per public key".into());
            }
        }
        if let Some(public_key) = public_key {
            peers.push(WgPeerDecl {
                public_key,
                endpoint,
                allowed_ips: allowed_ips.map(|a| a.value).unwrap_or_default(),
                keepalive,
                preshared_key_file,
                span: pr.span,
            });
        }
        pr.finish(cx);
    }
    Some(WireguardDecl { private_key_file: private_key_file?, listen_port, fwmark, peers })
}

/// The `address` children of a link or of `loopback`.
fn parse_addresses(cx: &mut Cx, r: &mut Reader) -> Vec<AddressDecl> {
    let mut addresses = Vec::new();
    for a in r.children("address") {
        let mut ar = Reader::new(cx, a);
        let net = ar
            .arg(cx, 0, "an address with prefix length")
            .and_then(|v| v.parse(cx, "interface address", parse_if_addr));
        let prefix_route = ar.prop(cx, "prefix-route").and_then(|v| v.bool(cx, "prefix-route"));
        if let Some(net) = net {
            addresses.push(AddressDecl { net, prefix_route, span: ar.span });
        }
        ar.finish(cx);
    }
    addresses
}

fn parse_route(cx: &mut Cx, r: &mut Reader) -> Option<RouteDecl> {
    let dst = r.arg(cx, 0, "a destination (`default` or a network)").and_then(|v| {
        let s = v.string(cx, "route destination")?;
        if s.value == "default" {
            Some(Spanned::new(RouteDst::Default, s.span))
        } else {
            v.parse(cx, "route destination", parse_net).map(|n| n.map(RouteDst::Net))
        }
    });
    let via = r.prop(cx, "via").and_then(|v| v.parse(cx, "gateway", parse_ip));
    let dev = {
        let v = r.prop(cx, "dev");
        link_name(cx, v)
    };
    let src = r.prop(cx, "src").and_then(|v| v.parse(cx, "source address", parse_ip));
    let metric =
        r.prop(cx, "metric").and_then(|v| v.int(cx, "metric", 0, u32::MAX as i128)).map(|s| s.map(|v| v as u32));
    let table = r.prop(cx, "table").and_then(|v| table_ref(cx, v));
    let scope = r.prop(cx, "scope").and_then(|v| {
        v.keyword(
            cx,
            "route scope",
            &[("global", RouteScope::Global), ("link", RouteScope::Link), ("host", RouteScope::Host)],
        )
    });
    let onlink = r.prop(cx, "onlink").and_then(|v| v.bool(cx, "onlink"));
    let route_type = r.prop(cx, "type").and_then(|v| {
        v.keyword(
            cx,
            "route type",
            &[
                ("unicast", RouteType::Unicast),
                ("blackhole", RouteType::Blackhole),
                ("unreachable", RouteType::Unreachable),
                ("prohibit", RouteType::Prohibit),
                ("throw", RouteType::Throw),
                ("local", RouteType::Local),
            ],
        )
    });
    let metric_attr = |cx: &mut Cx, r: &mut Reader, key: &'static str, min: i128, max: i128| {
        r.prop(cx, key).and_then(|v| v.int(cx, key, min, max)).map(|s| s.map(|v| v as u32))
    };
    let metrics = RouteMetricsDecl {
        mtu: metric_attr(cx, r, "mtu", 68, 65535),
        advmss: metric_attr(cx, r, "advmss", 1, 65535),
        initcwnd: metric_attr(cx, r, "initcwnd", 1, 1024),
        initrwnd: metric_attr(cx, r, "initrwnd", 1, 1024),
    };
    let mut nexthops = Vec::new();
    for n in r.children("nexthop") {
        let mut nr = Reader::new(cx, n);
        let nvia = nr.prop(cx, "via").and_then(|v| v.parse(cx, "gateway", parse_ip));
        let ndev = {
            let v = nr.prop(cx, "dev");
            link_name(cx, v)
        };
        let weight = nr.prop(cx, "weight").and_then(|v| v.int(cx, "weight", 1, 256)).map(|s| s.map(|v| v as u32));
        let nonlink = nr.prop(cx, "onlink").and_then(|v| v.bool(cx, "onlink"));
        if nvia.is_none() && ndev.is_none() && !nr.node.recovered {
            cx.error(code::MISSING_PROPERTY, nr.head_span(), "a `nexthop` needs `via` or `dev`").help =
                Some("add `via=\"GATEWAY\"` and the `dev` it is on".into());
        }
        nexthops.push(NextHopDecl { via: nvia, dev: ndev, weight, onlink: nonlink, span: nr.span });
        nr.finish(cx);
    }
    let dst = dst?;
    let kind = route_type.as_ref().map(|t| t.value).unwrap_or(RouteType::Unicast);
    if !nexthops.is_empty() {
        // One path is written on the route, several as `nexthop` children: not both.
        for (key, span) in [("via", via.as_ref().map(|v| v.span)), ("dev", dev.as_ref().map(|d| d.span))] {
            if let Some(span) = span {
                cx.error(code::INVALID_VALUE, span, format!("a route with `nexthop` children takes no `{key}`")).help =
                    Some(format!("move `{key}` into a `nexthop`, or drop the `nexthop` children"));
            }
        }
        if kind != RouteType::Unicast {
            if let Some(t) = &route_type {
                cx.error(code::INVALID_VALUE, t.span, format!("a `{}` route has no next hops", kind.keyword())).help =
                    Some("only unicast routes have `nexthop` children".into());
            }
        }
    }
    let is_unicast = kind == RouteType::Unicast;
    if is_unicast && via.is_none() && dev.is_none() && nexthops.is_empty() && !r.node.recovered {
        cx.error(code::MISSING_PROPERTY, r.head_span(), "a unicast route needs `via` or `dev`").help =
            Some("add `via=\"GATEWAY\"`, `dev=\"LINK\"`, `nexthop` children, or `type=\"blackhole\"`".into());
    }
    if kind == RouteType::Local && dev.is_none() && !r.node.recovered {
        cx.error(code::MISSING_PROPERTY, r.head_span(), "a local route needs `dev`").help =
            Some("add `dev=\"lo\"` (the kernel delivers the destination through that link)".into());
    }
    let gateways = via.iter().chain(nexthops.iter().filter_map(|n| n.via.as_ref()));
    for v in gateways {
        if let RouteDst::Net(n) = &dst.value {
            if v.value.is_ipv4() != n.addr().is_ipv4() {
                cx.error(code::INVALID_VALUE, v.span, "the gateway and the destination are of different IP families")
                    .help = Some("use an IPv4 gateway for an IPv4 route and an IPv6 gateway for an IPv6 route".into());
            }
        }
    }
    if let (Some(first), RouteDst::Default) = (nexthops.iter().find_map(|n| n.via.as_ref()), &dst.value) {
        for n in &nexthops {
            if let Some(v) = n.via.as_ref().filter(|v| v.value.is_ipv4() != first.value.is_ipv4()) {
                cx.error(code::INVALID_VALUE, v.span, "the next hops of one route are of different IP families").help =
                    Some("declare one route per IP family".into());
            }
        }
    }
    Some(RouteDecl { dst, via, dev, src, metric, table, scope, onlink, route_type, metrics, nexthops, span: r.span })
}

/// A routing table: an integer id (1..=4294967294) or a name.
fn table_ref(cx: &mut Cx, v: Val) -> Option<Spanned<TableRef>> {
    if let crate::kdl::Value::Integer(_) = v.value {
        return v.int(cx, "table", 1, 4_294_967_294).map(|s| s.map(|t| TableRef::Id(t as u32)));
    }
    let s = v.string(cx, "table")?;
    match s.value.parse::<u32>() {
        Ok(0) | Ok(u32::MAX) => {
            cx.error(code::INVALID_VALUE, s.span, format!("table `{}` is out of range", s.value)).help =
                Some("table is a number from 1 to 4294967294, or a table name".into());
            None
        }
        Ok(id) => Some(Spanned::new(TableRef::Id(id), s.span)),
        Err(_) => v.parse(cx, "table name", parse_name).map(|n| n.map(TableRef::Name)),
    }
}

/// The names the kernel gives its own tables; always defined, never declared.
pub const RESERVED_TABLES: [(&str, u32); 3] = [("default", 253), ("main", 254), ("local", 255)];

fn parse_table(cx: &mut Cx, r: &mut Reader) -> Option<TableDecl> {
    let name = name_arg(cx, r, "a table name");
    let id = r.required(cx, "id", "100").and_then(|v| v.int(cx, "table id", 1, 4_294_967_294));
    let name = name?;
    let id = id?.map(|i| i as u32);
    if let Some((reserved, rid)) = RESERVED_TABLES.iter().find(|(n, _)| *n == name.value) {
        cx.error(code::INVALID_VALUE, name.span, format!("`{reserved}` is the kernel's table {rid}")).help =
            Some(format!("use `table=\"{reserved}\"` as it is, or pick another name"));
        return None;
    }
    if let Some((reserved, _)) = RESERVED_TABLES.iter().find(|(_, rid)| *rid == id.value) {
        cx.error(code::INVALID_VALUE, id.span, format!("table {} is the kernel's `{reserved}` table", id.value)).help =
            Some(format!("refer to it as `table=\"{reserved}\"`, or pick another id"));
        return None;
    }
    Some(TableDecl { name, id, span: r.span })
}

fn parse_policy_rule(cx: &mut Cx, r: &mut Reader) -> Option<PolicyRuleDecl> {
    let priority = r.required(cx, "priority", "100").and_then(|v| v.int(cx, "priority", 1, u32::MAX as i128));
    let family = r
        .prop(cx, "family")
        .and_then(|v| v.keyword(cx, "address family", &[("ipv4", Family::Ipv4), ("ipv6", Family::Ipv6)]));
    let from = r.prop(cx, "from").and_then(|v| v.parse(cx, "network", parse_net));
    let to = r.prop(cx, "to").and_then(|v| v.parse(cx, "network", parse_net));
    let iif = {
        let v = r.prop(cx, "iif");
        link_name(cx, v)
    };
    let oif = {
        let v = r.prop(cx, "oif");
        link_name(cx, v)
    };
    let fwmark = r.prop(cx, "fwmark").and_then(|v| v.parse(cx, "mark", parse_mark));
    let ipproto = r.prop(cx, "ipproto").and_then(|v| proto(cx, v));
    let sport = r.prop(cx, "sport").and_then(|v| v.parse(cx, "port range", parse_port_range));
    let dport = r.prop(cx, "dport").and_then(|v| v.parse(cx, "port range", parse_port_range));
    let suppress_prefixlength = r
        .prop(cx, "suppress-prefixlength")
        .and_then(|v| v.int(cx, "suppress-prefixlength", 0, 128))
        .map(|s| s.map(|v| v as u32));
    let table = r.prop(cx, "table").and_then(|v| table_ref(cx, v));
    let action_kw = r.prop(cx, "action").and_then(|v| {
        v.keyword(
            cx,
            "rule action",
            &[
                ("blackhole", RouteType::Blackhole),
                ("unreachable", RouteType::Unreachable),
                ("prohibit", RouteType::Prohibit),
            ],
        )
        .map(|t| {
            t.map(|t| match t {
                RouteType::Blackhole => RuleActionDecl::Blackhole,
                RouteType::Unreachable => RuleActionDecl::Unreachable,
                _ => RuleActionDecl::Prohibit,
            })
        })
    });
    let goto = r.prop(cx, "goto").and_then(|v| v.int(cx, "goto", 1, u32::MAX as i128));
    let l3mdev = r.prop(cx, "l3mdev").and_then(|v| v.bool(cx, "l3mdev"));
    for ports in [&sport, &dport].into_iter().flatten() {
        if !ipproto.as_ref().is_some_and(|p| p.value.has_ports()) {
            cx.error(code::MISSING_PROPERTY, ports.span, "port ranges need a protocol that has ports").help =
                Some("add `ipproto=\"tcp\"`, `ipproto=\"udp\"` or `ipproto=\"sctp\"`".into());
        }
    }
    // The families the rule's own matches allow; a contradiction is one error on the later one.
    let mut fam: Option<Spanned<Family>> = family.clone();
    let implied = [
        from.as_ref().map(|n| (Family::of(n.value.addr()), n.span, "`from`")),
        to.as_ref().map(|n| (Family::of(n.value.addr()), n.span, "`to`")),
        ipproto.as_ref().and_then(|p| match p.value {
            Proto::Icmp => Some((Family::Ipv4, p.span, "`icmp`")),
            Proto::Icmpv6 => Some((Family::Ipv6, p.span, "`icmpv6`")),
            _ => None,
        }),
    ];
    for (f, span, what) in implied.into_iter().flatten() {
        match &fam {
            Some(have) if have.value != f => {
                cx.error(
                    code::INVALID_VALUE,
                    span,
                    format!("{what} is {} but the rule is {}", f.name(), have.value.name()),
                )
                .help = Some("a rule is of one address family; write one rule per family".into());
            }
            Some(_) => {}
            None => fam = Some(Spanned::new(f, span)),
        }
    }
    // Exactly one action.
    let mut actions: Vec<Spanned<RuleActionDecl>> = Vec::new();
    if let Some(t) = table {
        actions.push(Spanned::new(RuleActionDecl::Lookup(t.clone()), t.span));
    }
    if let Some(a) = action_kw {
        actions.push(a);
    }
    if let Some(g) = &goto {
        actions.push(Spanned::new(RuleActionDecl::Goto(g.value as u32), g.span));
        if priority.as_ref().is_some_and(|p| g.value <= p.value) {
            cx.error(code::INVALID_VALUE, g.span, "`goto` must jump to a later rule").help =
                Some("use a priority greater than the rule's own (the kernel refuses loops)".into());
        }
    }
    if let Some(l) = &l3mdev {
        if l.value {
            actions.push(Spanned::new(RuleActionDecl::L3mdev, l.span));
        }
    }
    if actions.len() > 1 {
        let d = cx.error(code::INVALID_VALUE, actions[1].span, "a rule has one action");
        d.secondary.push(crate::diagnostic::Label { span: actions[0].span, message: "the first action".into() });
        d.help = Some("keep one of `table`, `action`, `goto` and `l3mdev`".into());
    }
    let action = actions.into_iter().next();
    if action.is_none() && !r.node.recovered && priority.is_some() {
        cx.error(code::MISSING_PROPERTY, r.head_span(), "a `rule` needs an action").help =
            Some("add `table=\"NAME\"` (or an id), `action=\"prohibit\"`, `goto=PRIORITY` or `l3mdev=#true`".into());
    }
    Some(PolicyRuleDecl {
        priority: priority?.map(|p| p as u32),
        family: fam,
        from,
        to,
        iif,
        oif,
        fwmark,
        ipproto,
        sport,
        dport,
        suppress_prefixlength,
        action: action?,
        span: r.span,
    })
}

fn parse_neighbor(cx: &mut Cx, r: &mut Reader) -> Option<NeighborDecl> {
    let ip = r.arg(cx, 0, "an IP address").and_then(|v| v.parse(cx, "neighbour address", parse_ip));
    let mac = r.required(cx, "mac", "\"0a:58:a9:fe:ac:0f\"").and_then(|v| v.parse(cx, "MAC address", parse_mac));
    let dev = {
        let v = r.required(cx, "dev", "\"eth0\"");
        link_name(cx, v)
    };
    Some(NeighborDecl { ip: ip?, mac: mac?, dev: dev?, span: r.span })
}

fn parse_sysctl(cx: &mut Cx, r: &mut Reader) -> Option<SysctlDecl> {
    let path = r.arg(cx, 0, "a sysctl path").and_then(|v| v.parse(cx, "sysctl path", parse_sysctl_path));
    let value = r.arg(cx, 1, "a value").and_then(|v| match v.value {
        crate::kdl::Value::Integer(i) => match i64::try_from(*i) {
            Ok(i) => Some(Spanned::new(SysctlValue::Int(i), v.span)),
            Err(_) => {
                cx.error(code::INVALID_VALUE, v.span, "the sysctl value is out of range").help =
                    Some("sysctl values fit in 64 bits".into());
                None
            }
        },
        crate::kdl::Value::Bool(b) => Some(Spanned::new(SysctlValue::Int(i64::from(*b)), v.span)),
        _ => {
            let s = v.string(cx, "sysctl value")?;
            if s.value.contains(['\n', '\0']) {
                cx.error(code::INVALID_VALUE, s.span, "a sysctl value is one line").help =
                    Some("remove the line break".into());
                return None;
            }
            Some(s.map(SysctlValue::Str))
        }
    });
    Some(SysctlDecl { path: path?, value: value?, span: r.span })
}

fn parse_forwarding(cx: &mut Cx, r: &mut Reader) -> ForwardingDecl {
    let both = r.opt_arg(0).and_then(|v| v.bool(cx, "forwarding"));
    let ipv4 = r.prop(cx, "ipv4").and_then(|v| v.bool(cx, "ipv4")).or(both.clone());
    let ipv6 = r.prop(cx, "ipv6").and_then(|v| v.bool(cx, "ipv6")).or(both);
    if ipv4.is_none() && ipv6.is_none() && !r.node.recovered {
        cx.error(code::MISSING_ARGUMENT, r.head_span(), "`forwarding` needs a value").help =
            Some("write `forwarding #true` or `forwarding ipv4=#true ipv6=#false`".into());
    }
    ForwardingDecl { ipv4, ipv6, span: r.span }
}

fn addr_match(cx: &mut Cx, v: Val) -> Option<Spanned<AddrMatch>> {
    let s = v.string(cx, "address match")?;
    if let Some(set) = s.value.strip_prefix('@') {
        let span = s.span.sub(1, s.value.len());
        return parse_name(set)
            .map(|n| Spanned::new(AddrMatch::Set(n), span))
            .map_err(|e| {
                cx.error(
                    code::INVALID_VALUE,
                    span.sub(e.start, e.end.max(e.start + 1)),
                    format!("invalid set name: {}", e.message),
                )
                .help = e.help;
            })
            .ok();
    }
    v.parse(cx, "network", parse_net).map(|n| n.map(AddrMatch::Net))
}

fn proto(cx: &mut Cx, v: Val) -> Option<Spanned<Proto>> {
    v.keyword(
        cx,
        "protocol",
        &[
            ("tcp", Proto::Tcp),
            ("udp", Proto::Udp),
            ("sctp", Proto::Sctp),
            ("icmp", Proto::Icmp),
            ("icmpv6", Proto::Icmpv6),
        ],
    )
}

fn verdict(cx: &mut Cx, v: Val) -> Option<Spanned<Verdict>> {
    v.keyword(cx, "policy", &[("accept", Verdict::Accept), ("drop", Verdict::Drop), ("reject", Verdict::Reject)])
}

fn direction(cx: &mut Cx, v: Val, allow_forward: bool) -> Option<Spanned<Direction>> {
    if allow_forward {
        v.keyword(cx, "direction", &[("in", Direction::In), ("out", Direction::Out), ("forward", Direction::Forward)])
    } else {
        v.keyword(cx, "direction", &[("in", Direction::In), ("out", Direction::Out)])
    }
}

fn parse_firewall(cx: &mut Cx, r: &mut Reader) -> FirewallDecl {
    let mut fw = FirewallDecl { span: r.span, ..FirewallDecl::default() };
    for child in r.all_children() {
        let mut c = Reader::new(cx, child);
        match c.keyword() {
            "policy" => {
                for (key, slot) in
                    [("in", &mut fw.policy_in), ("out", &mut fw.policy_out), ("forward", &mut fw.policy_forward)]
                {
                    if let Some(v) = c.prop(cx, key).and_then(|v| verdict(cx, v)) {
                        set_once(cx, slot, v, &format!("the `{key}` policy"));
                    }
                }
            }
            "stateful" => {
                if let Some(v) = c.arg(cx, 0, "#true or #false").and_then(|v| v.bool(cx, "stateful")) {
                    set_once(cx, &mut fw.stateful, v, "`stateful`");
                }
            }
            "zone" => {
                if let Some(name) = name_arg(cx, &mut c, "a zone name") {
                    let mut links = Vec::new();
                    for v in c.rest_args(1) {
                        links.extend(link_name(cx, Some(v)));
                    }
                    for l in c.children("link") {
                        let mut lr = Reader::new(cx, l);
                        links.extend({
                            let v = lr.arg(cx, 0, "an interface name");
                            link_name(cx, v)
                        });
                        lr.finish(cx);
                    }
                    fw.zones.push(ZoneDecl { name, links, span: c.span });
                }
            }
            "set" => {
                if let Some(name) = name_arg(cx, &mut c, "a set name") {
                    let mut elements = Vec::new();
                    for v in c.rest_args(1) {
                        elements.extend(v.parse(cx, "set element", parse_net));
                    }
                    for e in c.children("element") {
                        let mut er = Reader::new(cx, e);
                        elements.extend(er.arg(cx, 0, "a network").and_then(|v| v.parse(cx, "set element", parse_net)));
                        er.finish(cx);
                    }
                    fw.sets.push(SetDecl { name, elements, span: c.span });
                }
            }
            "allow" | "deny" | "reject" => fw.rules.extend(parse_rule(cx, &mut c)),
            other => {
                let d =
                    cx.error(code::UNKNOWN_NODE, c.name_span, format!("`{other}` is not allowed inside `firewall`"));
                d.help = Some(
                    match crate::diagnostic::closest(
                        other,
                        ["policy", "stateful", "zone", "set", "allow", "deny", "reject"],
                    ) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => {
                            "a firewall holds `policy`, `stateful`, `zone`, `set`, `allow`, `deny` and `reject`".into()
                        }
                    },
                );
                continue;
            }
        }
        c.finish(cx);
    }
    fw
}

fn parse_rule(cx: &mut Cx, r: &mut Reader) -> Option<RuleDecl> {
    let verdict = match r.keyword() {
        "allow" => Verdict::Accept,
        "deny" => Verdict::Drop,
        _ => Verdict::Reject,
    };
    let verdict = Spanned::new(verdict, r.name_span);
    let direction = r.arg(cx, 0, "a direction (`in`, `out` or `forward`)").and_then(|v| direction(cx, v, true));
    let proto = r.prop(cx, "proto").and_then(|v| proto(cx, v));
    let dport = r.prop(cx, "port").and_then(|v| v.parse(cx, "port", parse_port_set));
    let sport = r.prop(cx, "sport").and_then(|v| v.parse(cx, "port", parse_port_set));
    for ports in [&dport, &sport].into_iter().flatten() {
        if !proto.as_ref().is_some_and(|p| p.value.has_ports()) {
            cx.error(code::MISSING_PROPERTY, ports.span, "ports need a protocol that has ports").help =
                Some("add `proto=\"tcp\"`, `proto=\"udp\"` or `proto=\"sctp\"`".into());
        }
    }
    let from = r.prop(cx, "from").and_then(|v| addr_match(cx, v));
    let to = r.prop(cx, "to").and_then(|v| addr_match(cx, v));
    let iif = {
        let v = r.prop(cx, "iif");
        link_name(cx, v)
    };
    let oif = {
        let v = r.prop(cx, "oif");
        link_name(cx, v)
    };
    let from_zone = r.prop(cx, "from-zone").and_then(|v| v.parse(cx, "zone name", parse_name));
    let to_zone = r.prop(cx, "to-zone").and_then(|v| v.parse(cx, "zone name", parse_name));
    let mut state = Vec::new();
    if let Some(v) = r.prop(cx, "state") {
        if let Some(s) = v.string(cx, "state") {
            let mut pos = 0;
            for part in s.value.split(',') {
                let span = s.span.sub(pos, pos + part.len());
                pos += part.len() + 1;
                let st = match part.trim() {
                    "new" => ConnState::New,
                    "established" => ConnState::Established,
                    "related" => ConnState::Related,
                    "invalid" => ConnState::Invalid,
                    other => {
                        cx.error(code::INVALID_VALUE, span, format!("`{other}` is not a connection state")).help =
                            Some("use `new`, `established`, `related` or `invalid`, comma-separated".into());
                        continue;
                    }
                };
                state.push(Spanned::new(st, span));
            }
        }
    }
    let log = r.prop(cx, "log").and_then(|v| v.bool(cx, "log"));
    let comment = r.prop(cx, "comment").and_then(|v| v.string(cx, "comment"));
    Some(RuleDecl {
        verdict,
        direction: direction?,
        proto,
        dport,
        sport,
        from,
        to,
        iif,
        oif,
        from_zone,
        to_zone,
        state,
        log,
        comment,
        span: r.span,
    })
}

fn parse_service(cx: &mut Cx, r: &mut Reader) -> Option<ServiceDecl> {
    let name = name_arg(cx, r, "a service name");
    let vip = r.required(cx, "vip", "\"10.96.0.10\"").and_then(|v| v.parse(cx, "virtual IP", parse_ip));
    let port = r.required(cx, "port", "80").and_then(|v| v.parse(cx, "port", parse_port));
    let proto = r.prop(cx, "proto").and_then(|v| proto(cx, v));
    if let Some(p) = &proto {
        if !p.value.has_ports() {
            cx.error(code::INVALID_VALUE, p.span, "a service needs a protocol with ports").help =
                Some("use `tcp`, `udp` or `sctp`".into());
        }
    }
    let mut backends = Vec::new();
    for b in r.children("backend") {
        let mut br = Reader::new(cx, b);
        let ep = br.arg(cx, 0, "an address:port").and_then(|v| v.parse(cx, "backend", parse_endpoint));
        let weight = br.prop(cx, "weight").and_then(|v| v.int(cx, "weight", 1, 1000)).map(|s| s.map(|v| v as u32));
        if let Some(ep) = ep {
            // The endpoint span covers both parts; the address is the text before the last colon.
            let (addr, port) = ep.value;
            backends.push(BackendDecl {
                addr: Spanned::new(addr, ep.span),
                port: Spanned::new(port, ep.span),
                weight,
                span: br.span,
            });
        }
        br.finish(cx);
    }
    Some(ServiceDecl { name: name?, vip: vip?, port: port?, proto, backends, span: r.span })
}

fn parse_redirect(cx: &mut Cx, r: &mut Reader) -> Option<RedirectDecl> {
    let direction = r.arg(cx, 0, "a direction (`in` or `out`)").and_then(|v| direction(cx, v, false));
    let proto = r.prop(cx, "proto").and_then(|v| proto(cx, v));
    let ports = r.prop(cx, "port").and_then(|v| v.parse(cx, "port", parse_port_set));
    let except_ports = r.prop(cx, "except-port").and_then(|v| v.parse(cx, "port", parse_port_set));
    let except_uid = r.prop(cx, "except-uid").and_then(|v| v.int(cx, "user id", 0, i128::from(u32::MAX)));
    if let (Some(uid), Some(d)) = (&except_uid, &direction) {
        if d.value == Direction::In {
            cx.error(code::INVALID_VALUE, uid.span, "`except-uid` applies to `redirect out` only").help =
                Some("inbound packets have no local user; remove it, or use `except-port`".into());
        }
    }
    let to_port = r.required(cx, "to-port", "4143").and_then(|v| v.parse(cx, "port", parse_port));
    if let Some(p) = &proto {
        if !p.value.has_ports() {
            cx.error(code::INVALID_VALUE, p.span, "a redirect needs a protocol with ports").help =
                Some("use `tcp`, `udp` or `sctp`".into());
        }
    }
    let except_uid = except_uid.map(|u| u.map(|v| v as u32));
    Some(RedirectDecl {
        direction: direction?,
        proto,
        ports,
        except_ports,
        except_uid,
        to_port: to_port?,
        span: r.span,
    })
}

fn parse_listen(cx: &mut Cx, r: &mut Reader) -> Option<ListenDecl> {
    let name = name_arg(cx, r, "a listener name");
    let port = r.required(cx, "port", "80").and_then(|v| v.parse(cx, "port", parse_port));
    let address = r.prop(cx, "address").and_then(|v| v.parse(cx, "address", parse_ip));
    let proto = r.prop(cx, "proto").and_then(|v| proto(cx, v));
    if let Some(p) = &proto {
        if !p.value.has_ports() {
            cx.error(code::INVALID_VALUE, p.span, "a listener needs a protocol with ports").help =
                Some("use `tcp`, `udp` or `sctp`".into());
        }
    }
    Some(ListenDecl { name: name?, address, port: port?, proto, span: r.span })
}

#[allow(dead_code)]
fn node_span(_cx: &Cx, n: &KdlNode) -> Span {
    n.span
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapLoader(HashMap<PathBuf, String>);

    impl Loader for MapLoader {
        fn resolve(&mut self, path: &Path) -> Result<PathBuf, LoadError> {
            let key = crate::loader::normalize(path);
            if self.0.contains_key(&key) {
                Ok(key)
            } else {
                Err(LoadError::Io(std::io::ErrorKind::NotFound.into()))
            }
        }
        fn read(&mut self, key: &Path) -> Result<Vec<u8>, LoadError> {
            Ok(self.0[key].as_bytes().to_vec())
        }
    }

    fn load(files: &[(&str, &str)]) -> Parsed {
        let map: HashMap<PathBuf, String> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
        let (entry, text) = files[0];
        let mut parsed = Parsed::default();
        parsed.add_file(entry.into(), Some(entry.into()), text.as_bytes(), &mut MapLoader(map));
        parsed
    }

    #[test]
    fn includes_are_relative_and_read_once() {
        let p = load(&[
            ("/s/fleet.kdl", "include \"common/t.kdl\"\ninclude \"common/t.kdl\"\nnode \"a\" { use \"w\"; }"),
            ("/s/common/t.kdl", "template \"w\" { forwarding #true; }"),
        ]);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert_eq!(p.spec.templates.len(), 1);
        assert_eq!(p.sources.files().count(), 2);
    }

    #[test]
    fn diagnostics_point_into_the_included_file() {
        let p = load(&[("/s/a.kdl", "include \"b.kdl\""), ("/s/b.kdl", "node \"x\" {\n  bridge \"br0\" mtu=10\n}")]);
        assert_eq!(p.diagnostics.len(), 1);
        let d = &p.diagnostics[0];
        assert_eq!(p.sources.get(d.primary.span.file).name, "/s/b.kdl");
        assert_eq!(p.sources.slice(d.primary.span), "10");
        assert_eq!(p.sources.line_col(d.primary.span.file, d.primary.span.start), (2, 20));
    }

    #[test]
    fn include_cycles_and_missing_files() {
        let p = load(&[("/s/a.kdl", "include \"b.kdl\"\ninclude \"nope.kdl\""), ("/s/b.kdl", "include \"a.kdl\"")]);
        let codes: Vec<&str> = p.diagnostics.iter().map(|d| d.code.id).collect();
        assert_eq!(codes, ["include-cycle", "include-failed"]);
    }

    #[test]
    fn a_file_reached_through_dotdot_is_the_same_file() {
        // `a.kdl` including `../s/a.kdl` is a cycle, not 814 reads of the same file.
        let p = load(&[("/s/a.kdl", "include \"../s/a.kdl\"\ninclude \"./a.kdl\"\nnode \"n\" {}")]);
        let codes: Vec<&str> = p.diagnostics.iter().map(|d| d.code.id).collect();
        assert_eq!(codes, ["include-cycle", "include-cycle"]);
        assert_eq!(p.sources.files().count(), 1);
        assert_eq!(p.spec.nodes.len(), 1);
    }

    #[test]
    fn every_file_is_read_once_however_it_is_spelled() {
        // Each level includes the next twice under two spellings: 2^20 paths, 21 files.
        let mut files = Vec::new();
        for i in 0..20 {
            files.push((
                format!("/s/f{i}.kdl"),
                format!("include \"f{n}.kdl\"\ninclude \"../s/./f{n}.kdl\"\nnode \"n{i}\" {{}}", n = i + 1),
            ));
        }
        files.push(("/s/f20.kdl".into(), "node \"n20\" {}".into()));
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let p = load(&refs);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert_eq!(p.sources.files().count(), 21);
        assert_eq!(p.spec.nodes.len(), 21);
    }

    #[test]
    fn includes_nest_at_most_max_depth() {
        let n = crate::loader::MAX_INCLUDE_DEPTH + 5;
        let files: Vec<(String, String)> =
            (0..n).map(|i| (format!("/s/f{i}.kdl"), format!("include \"f{}.kdl\"", i + 1))).collect();
        let mut files = files;
        files.push((format!("/s/f{n}.kdl"), String::new()));
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let p = load(&refs);
        let codes: Vec<&str> = p.diagnostics.iter().map(|d| d.code.id).collect();
        assert_eq!(codes, ["include-refused"]);
        assert_eq!(p.sources.files().count(), crate::loader::MAX_INCLUDE_DEPTH);
    }

    #[test]
    fn syntax_errors_and_non_utf8_are_diagnostics() {
        let p = parse_str("t.kdl", "node \"a\" {\n  bridge \"br0 {\n}\n");
        assert_eq!(p.diagnostics[0].code, "syntax");
        let mut parsed = Parsed::default();
        parsed.add_file("bin.kdl".into(), None, b"node \"a\xff\" {}", &mut FsLoader::new(Vec::new()).unwrap());
        assert_eq!(parsed.diagnostics[0].code, "invalid-utf8");
        assert_eq!(parsed.diagnostics[0].primary.span.start, 7);
        assert_eq!(parsed.diagnostics[0].primary.span.end, 10);
    }

    #[test]
    fn a_syntax_error_is_reported_once_and_the_rest_is_still_read() {
        let p = parse_str(
            "t.kdl",
            "node \"a\" {\n  forwarding true\n  route \"default\" via=10.0.0.1\n  bridge \"br0\" mtu=10\n}",
        );
        let codes: Vec<&str> = p.diagnostics.iter().map(|d| d.code.id).collect();
        // Two syntax errors, no "needs a value" for what they hid, and the bad MTU on the
        // next line is still found.
        assert_eq!(codes, ["syntax", "syntax", "invalid-value"]);
    }

    #[test]
    fn unknown_properties_suggest_the_known_ones() {
        let p = parse_str("t.kdl", "node \"a\" { bridge \"br0\" mut=1500; rout \"default\" dev=\"br0\"; }");
        let helps: Vec<(&str, Option<&str>)> = p.diagnostics.iter().map(|d| (d.code.id, d.help.as_deref())).collect();
        assert_eq!(
            helps,
            [("unknown-property", Some("did you mean `mtu`?")), ("unknown-node", Some("did you mean `route`?"))]
        );
    }

    #[test]
    fn attributes_as_properties_or_children() {
        let p =
            parse_str("t.kdl", "node \"a\" { bridge \"br0\" { mtu 9000; netfilter #true; address \"10.0.0.1/24\"; } }");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let l = &p.spec.nodes[0].body.links[0];
        assert_eq!(l.mtu.as_ref().unwrap().value, 9000);
        assert!(matches!(&l.kind, LinkKindDecl::Bridge { netfilter: Some(n), .. } if n.value));
    }
}

#[cfg(test)]
mod once_tests {
    use super::*;

    #[test]
    fn wireguard_secrets_stay_out_of_the_spec() {
        let src = r#"
node "n" {
    wireguard "wg0" private-key="cGYZbykQ6Na5Y70tAwENMcnDYNGmz6GdpqTOIPZp8mI=" {
        peer public-key="short" allowed-ips="10.8.0.2/32,,10.9.0.0/16"
        peer public-key="QcI070yfYPbPyxO7NROMdksMy3LUtfDqjWOShJE4TOM=" preshared-key="x"
        peer public-key="QcI070yfYPbPyxO7NROMdksMy3LUtfDqjWOShJE4TOM="
    }
}
"#;
        let parsed = parse_str("t.kdl", src);
        let got: Vec<(&str, &str)> = parsed
            .diagnostics
            .iter()
            .map(|d| (d.code.id, &src[d.primary.span.start as usize..d.primary.span.end as usize]))
            .collect();
        assert_eq!(
            got,
            [
                ("invalid-value", "\"cGYZbykQ6Na5Y70tAwENMcnDYNGmz6GdpqTOIPZp8mI=\""),
                ("missing-property", "wireguard \"wg0\" private-key=\"cGYZbykQ6Na5Y70tAwENMcnDYNGmz6GdpqTOIPZp8mI=\""),
                ("invalid-value", "short"),
                ("invalid-value", ","),
                ("invalid-value", "\"x\""),
                ("duplicate-property", "QcI070yfYPbPyxO7NROMdksMy3LUtfDqjWOShJE4TOM="),
            ],
            "{:#?}",
            parsed.diagnostics
        );
        // The key is quoted back in no message or help.
        for d in &parsed.diagnostics {
            let text = format!("{} {:?}", d.message, d.help);
            assert!(!text.contains("cGYZbykQ6Na5Y70tAwENMcnDYNGmz6GdpqTOIPZp8mI="), "{text}");
        }
    }

    fn codes(src: &str) -> Vec<&'static str> {
        parse_str("t.kdl", src).diagnostics.iter().map(|d| d.code.id).collect()
    }

    #[test]
    fn settings_given_twice_are_errors_not_overrides() {
        let p = parse_str("t.kdl", "node \"a\" { firewall { policy in=\"drop\"; policy out=\"accept\"; } }");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let fw = &p.spec.nodes[0].body.firewalls[0];
        assert!(fw.policy_in.is_some() && fw.policy_out.is_some(), "one policy node must not erase another");
        assert_eq!(
            codes("node \"a\" { firewall { policy in=\"drop\"; policy in=\"accept\"; } }"),
            ["duplicate-property"]
        );
        assert_eq!(codes("node \"a\" { rp-filter \"strict\"; rp-filter \"loose\"; }"), ["duplicate-property"]);
        assert_eq!(codes("node \"a\" { bridge \"b\" mtu=1500 { mtu 9000; } }"), ["duplicate-property"]);
        assert_eq!(codes("node \"a\" { listen \"x\" port=1 proto=\"icmp\"; }"), ["invalid-value"]);
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::*;

    #[test]
    fn except_uid_is_for_outbound_redirects_only() {
        let ok = parse_str("t.kdl", "node \"a\" { redirect out to-port=4140 except-uid=2102; }");
        assert!(ok.diagnostics.is_empty(), "{:?}", ok.diagnostics);
        assert_eq!(ok.spec.nodes[0].body.redirects[0].except_uid.as_ref().map(|u| u.value), Some(2102));
        let bad = parse_str("t.kdl", "node \"a\" { redirect in to-port=4143 except-uid=2102; }");
        assert_eq!(bad.diagnostics.iter().map(|d| d.code.id).collect::<Vec<_>>(), ["invalid-value"]);
    }
}
