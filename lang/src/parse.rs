//! KDL text to the typed AST. Parsing never fails: it returns what it could read plus
//! diagnostics, and follows `include`s (relative to the including file) through a [`Loader`],
//! which decides which files may be read (see `loader.rs`).

use crate::ast::*;
use crate::code;
use crate::diagnostic::Diagnostic;
use crate::kdl::{Node as KdlNode, Value as KdlValue};
use crate::links::{Keyword, LINK_KEYWORDS};
pub use crate::loader::{FsLoader, LoadError, Loader};
use crate::rare::Rare;
use crate::reader::{Cx, Reader, Val};
use crate::source::{FileId, SourceMap, Span, Spanned};
use crate::value::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod nat;

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
        self.add_file_owned(name, path, bytes.to_vec(), loader)
    }

    /// [`Parsed::add_file`] taking the bytes: they are dropped once the source map holds the
    /// text, before the file is parsed (a second copy of the input at the parse's peak).
    pub fn add_file_owned(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        bytes: Vec<u8>,
        loader: &mut dyn Loader,
    ) -> FileId {
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

    fn add_text(&mut self, name: String, path: Option<PathBuf>, bytes: Vec<u8>) -> FileId {
        match String::from_utf8(bytes) {
            Ok(text) => self.sources.add(name, path, text),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
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
            // Each top-level node's tree is dropped once read: a fleet's tree and AST are not
            // both whole at once.
            for node in doc.nodes {
                let node = &node;
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
                        let params = parse_params(&mut cx, node);
                        let (body, raw) = if node.child_nodes().iter().any(|c| c.name.value == "param") {
                            // Read at each `use`, with the arguments in place (template.rs).
                            r.all_children();
                            let raw = crate::template::RawTemplate {
                                node: crate::template::to_owned(node),
                                dir: cx.dir.clone(),
                            };
                            (NsBody::default(), Some(std::sync::Arc::new(raw)))
                        } else {
                            (parse_body(&mut cx, &mut r, BodyKind::Template), None)
                        };
                        if let Some(name) = name {
                            self.spec.templates.push(TemplateDecl { name, body, params, raw, span: r.span });
                        }
                    }
                    "rules" => {
                        let name = name_arg(&mut cx, &mut r, "a rule group name");
                        let group = parse_rule_group(&mut cx, &mut r, name);
                        self.spec.rule_groups.extend(group);
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
                        d.help =
                            Some(match crate::diagnostic::closest(other, ["node", "template", "rules", "include"]) {
                                Some(c) => format!("did you mean `{c}`?"),
                                None => "a spec file holds `node`, `template`, `rules` and `include` nodes".into(),
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
                let f = self.add_text(path.display().to_string(), Some(path.clone()), bytes);
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

/// The body of a template with parameters, read again at a `use` (see `template.rs`).
pub(crate) fn parse_template_body(cx: &mut Cx, r: &mut Reader) -> NsBody {
    parse_body(cx, r, BodyKind::Template)
}

/// `param "NAME" [default=VALUE]` children of a template.
fn parse_params(cx: &mut Cx, template: &KdlNode) -> Vec<ParamDecl> {
    let mut out = Vec::new();
    for child in template.child_nodes().iter().filter(|c| c.name.value == "param") {
        let mut c = Reader::new(cx, child);
        let name = name_arg(cx, &mut c, "a parameter name");
        let default = c.prop(cx, "default").map(|v| Spanned::new(crate::template::owned_value(v.value), v.inner));
        c.finish(cx);
        if let Some(name) = name {
            out.push(ParamDecl { name, default, span: child.span });
        }
    }
    out
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
    let children = r.all_children();
    // Sized up front: the room doubling leaves (and its copies) counts while the tree is alive.
    body.routes.reserve_exact(children.iter().filter(|c| c.name.value == "route").count());
    for child in children {
        if kind == BodyKind::Template && child.name.value == "param" {
            continue; // read by `parse_params`
        }
        let mut c = Reader::new(cx, child);
        match c.keyword() {
            "use" => {
                let names = c.rest_args(0);
                if names.is_empty() {
                    c.arg(cx, 0, "a template name");
                }
                let mut args = Vec::new();
                for (key, key_span, v) in c.rest_props() {
                    if names.len() > 1 {
                        cx.error(code::INVALID_VALUE, key_span, "template arguments need a `use` of one template")
                            .help = Some("write one `use` per template: `use \"NAME\" KEY=VALUE`".into());
                        args.push((Spanned::new(key.to_string(), key_span), Spanned::new(KdlValue::Null, v.span)));
                        break;
                    }
                    args.push((
                        Spanned::new(key.to_string(), key_span),
                        Spanned::new(crate::template::owned_value(v.value), v.inner),
                    ));
                }
                if names.len() > 1 && !args.is_empty() {
                    continue; // reported above; which template the arguments were for is unknown
                }
                for v in names {
                    if let Some(name) = v.parse(cx, "template name", parse_name) {
                        body.uses.push(UseDecl { name, args: args.clone(), span: c.head_span() });
                    }
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
                        // NetnsName::HOST
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
                let ports = c.prop(cx, "ports").and_then(|v| v.parse(cx, "port range", parse_port_range));
                if let Some(to) =
                    c.required(cx, "to", "\"203.0.113.7\"").and_then(|v| v.parse(cx, "address or pool", parse_ip_pool))
                {
                    let (first, last) = to.value;
                    let to_last = (first != last).then_some(last);
                    body.snats.push(SnatDecl {
                        from,
                        out,
                        to: Spanned::new(first, to.span),
                        to_last,
                        ports,
                        span: c.span,
                    });
                }
            }
            "redirect" => body.redirects.extend(parse_redirect(cx, &mut c)),
            "listen" => body.listeners.extend(parse_listen(cx, &mut c)),
            "publish" => body.publishes.extend(nat::parse_publish(cx, &mut c)),
            "netmap" => body.netmaps.extend(nat::parse_netmap(cx, &mut c)),
            "tproxy" => body.tproxies.extend(nat::parse_tproxy(cx, &mut c)),
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
                    "publish",
                    "netmap",
                    "tproxy",
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
                if s.value == NetnsName::HOST {
                    Some(s.map(|_| NetnsName::Host))
                } else {
                    v.parse(cx, "namespace name", parse_name).map(|n| n.map(NetnsName::Named))
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
        dhcp: r.prop(cx, "dhcp").and_then(|v| v.bool(cx, "dhcp")),
        port: PortOptions {
            cost: r.prop(cx, "port-cost").and_then(|v| v.int(cx, "port-cost", 1, 65535)).map(|v| v.value as u32),
            priority: r
                .prop(cx, "port-priority")
                .and_then(|v| v.int(cx, "port-priority", 0, 63))
                .map(|v| v.value as u16),
        },
        vlans: port_vlans(cx, r),
        match_mac: if keyword == "ethernet" {
            r.prop(cx, "match-mac").and_then(|v| v.parse(cx, "MAC address", parse_mac))
        } else {
            None
        },
    };
    let addresses = parse_addresses(cx, r);
    let Some(kind) = kind else { return Err(name) };
    let Some(name) = name else { return Err(None) };
    Ok(LinkDecl { name, kind, mtu, mac, state, master, hairpin, rp_filter: rp, options, addresses, span: r.span })
}

/// `vlans`, `pvid` and `untagged` of a bridge port (or of the bridge itself): the VLANs carried,
/// with `pvid` and `untagged` among them.
fn port_vlans(cx: &mut Cx, r: &mut Reader) -> Option<Spanned<crate::links::Vlans>> {
    let vlans = r.prop(cx, "vlans").and_then(|v| v.parse(cx, "VLAN list", parse_vlan_list));
    let pvid = r.prop(cx, "pvid").and_then(|v| v.parse(cx, "VLAN id", parse_vlan_id));
    let untagged = r.prop(cx, "untagged").and_then(|v| v.parse(cx, "VLAN list", parse_vlan_list));
    let Some(vlans) = vlans else {
        for (what, span) in [("pvid", pvid.map(|p| p.span)), ("untagged", untagged.map(|u| u.span))] {
            if let Some(span) = span {
                cx.error(code::INVALID_VALUE, span, format!("`{what}` without `vlans`")).help = Some(
                    "list the VLANs the port carries with `vlans=\"…\"`; `pvid` and `untagged` pick among them".into(),
                );
            }
        }
        return None;
    };
    let mut ok = true;
    if let Some(p) = &pvid {
        if !vlans.value.contains(&p.value) {
            ok = false;
            cx.error(code::INVALID_VALUE, p.span, format!("`pvid` {} is not one of the port's `vlans`", p.value))
                .help = Some(format!("add {} to `vlans`", p.value));
        }
    }
    if let Some(u) = &untagged {
        let outside: Vec<String> = u.value.difference(&vlans.value).map(|v| v.to_string()).collect();
        if !outside.is_empty() {
            ok = false;
            cx.error(
                code::INVALID_VALUE,
                u.span,
                format!("`untagged` names VLANs the port does not carry: {}", outside.join(", ")),
            )
            .help = Some("every `untagged` VLAN must also be in `vlans`".into());
        }
    }
    if !ok {
        return None;
    }
    let map = vlans
        .value
        .iter()
        .map(|&vid| {
            let f = crate::links::PortVlan {
                pvid: pvid.as_ref().is_some_and(|p| p.value == vid),
                untagged: untagged.as_ref().is_some_and(|u| u.value.contains(&vid)),
            };
            (vid, f)
        })
        .collect();
    Some(Spanned::new(map, vlans.span))
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
    // Told apart on the borrowed text: no string is made for the destination.
    let dst = r.arg(cx, 0, "a destination (`default` or a network)").and_then(|v| match v.value {
        crate::kdl::Value::String(s) if &**s == "default" => Some(Spanned::new(RouteDst::Default, v.inner)),
        crate::kdl::Value::String(_) => v.parse(cx, "route destination", parse_net).map(|n| n.map(RouteDst::Net)),
        _ => v.string(cx, "route destination").and(None),
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
    let more = RouteDeclMore { src, metric, table, scope, onlink, route_type, metrics, nexthops };
    Some(RouteDecl { dst, via, dev, span: r.span, more: Rare::new(more) })
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
        crate::kdl::Value::Integer(i) => match i64::try_from(i.get()) {
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
    if let KdlValue::String(s) = v.value {
        if s.starts_with('!') {
            cx.error(code::INVALID_VALUE, v.inner.sub(0, 1), "this address cannot be negated").help =
                Some("`!` negates the matches of firewall rules only; list the sources to translate instead".into());
            return None;
        }
    }
    v.parse(cx, "network", parse_addr_match)
}

/// A network or `@SET` (the set name is checked as a name).
fn parse_addr_match(text: &str) -> Result<AddrMatch, ValueError> {
    if let Some(set) = text.strip_prefix('@') {
        return parse_name(set).map(AddrMatch::Set).map_err(|e| ValueError { start: e.start + 1, end: e.end + 1, ..e });
    }
    parse_net(text).map(AddrMatch::Net)
}

/// A match value that may be negated with a leading `!` (`from="!10.0.0.0/8"`, `port="!22"`):
/// the value and whether it was negated. Errors point into the text after the `!`.
fn negatable<T>(
    cx: &mut Cx,
    v: Val,
    what: &str,
    parser: impl Fn(&str) -> Result<T, ValueError>,
) -> Option<(Spanned<T>, bool)> {
    if let KdlValue::String(s) = v.value {
        if let Some(rest) = s.strip_prefix('!') {
            let exact = v.inner.len() == s.len();
            let span = if exact { v.inner.sub(1, s.len()) } else { v.inner };
            return match parser(rest) {
                Ok(t) => Some((Spanned::new(t, span), true)),
                Err(e) => {
                    let at =
                        if exact && !rest.is_empty() { span.sub(e.start, e.end.max(e.start + 1)) } else { v.inner };
                    cx.error(code::INVALID_VALUE, at, format!("invalid {what}: {}", e.message)).help = e.help;
                    None
                }
            };
        }
    }
    v.parse(cx, what, parser).map(|t| (t, false))
}

/// A rule's `port`/`sport`: a port written as a number (`port=22`, the common case) is taken as
/// it is; its decimal text made again and parsed was a sixth of reading a rule.
fn port_match(cx: &mut Cx, v: Val) -> Option<(Spanned<PortSet>, bool)> {
    if let KdlValue::Integer(i) = v.value {
        if let Ok(port @ 1..) = u16::try_from(i.get()) {
            return Some((Spanned::new(PortSet(smallvec::smallvec![PortRange::single(port)]), v.span), false));
        }
    }
    negatable(cx, v, "port", parse_port_set)
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
            ("igmp", Proto::Igmp),
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
    let children = r.all_children();
    // Sized up front: the room doubling leaves (and its copies) counts while the tree is alive.
    fw.rules.reserve_exact(children.iter().filter(|c| matches!(&*c.name.value, "allow" | "deny" | "reject")).count());
    for child in children {
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
                    let (mut links, mut patterns) = (Vec::new(), Vec::new());
                    let mut member = |cx: &mut Cx, v: Option<Val>| match v {
                        Some(v) if matches!(v.value, KdlValue::String(s) if s.ends_with('*')) => {
                            patterns.extend(v.parse(cx, "link pattern", parse_link_pattern))
                        }
                        v => links.extend(link_name(cx, v)),
                    };
                    for v in c.rest_args(1) {
                        member(cx, Some(v));
                    }
                    for l in c.children("link") {
                        let mut lr = Reader::new(cx, l);
                        let v = lr.arg(cx, 0, "an interface name");
                        member(cx, v);
                        lr.finish(cx);
                    }
                    fw.zones.push(ZoneDecl { name, links, patterns, span: c.span });
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
                    let dynamic = dynamic_set(cx, &mut c, &elements);
                    fw.sets.push(SetDecl { name, elements, dynamic, span: c.span });
                }
            }
            "allow" | "deny" | "reject" => fw.rules.extend(parse_rule(cx, &mut c)),
            "use-rules" => fw.rule_uses.extend(rules_use(cx, &mut c, fw.rules.len())),
            "mark" => fw.marks.extend(parse_rule(cx, &mut c)),
            "notrack" => fw.notracks.extend(parse_rule(cx, &mut c)),
            "clamp-mss" => {
                let out = {
                    let v = c.prop(cx, "out");
                    link_name(cx, v)
                };
                let size = c.prop(cx, "size").and_then(|v| v.int(cx, "MSS", 536, 65495)).map(|s| s.map(|v| v as u16));
                fw.clamp_mss.push(ClampMssDecl { out, size, span: c.span });
            }
            other => {
                let d =
                    cx.error(code::UNKNOWN_NODE, c.name_span, format!("`{other}` is not allowed inside `firewall`"));
                d.help = Some(
                    match crate::diagnostic::closest(
                        other,
                        [
                            "policy",
                            "stateful",
                            "zone",
                            "set",
                            "allow",
                            "deny",
                            "reject",
                            "mark",
                            "clamp-mss",
                            "notrack",
                            "use-rules",
                        ],
                    ) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => {
                            "a firewall holds `policy`, `stateful`, `zone`, `set`, `allow`, `deny`, `reject` and `mark`"
                                .into()
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

/// The properties most firewall rules are written with, in the order [`parse_rule`] reads them.
const COMMON_RULE_KEYS: [&str; 5] = ["proto", "port", "sport", "from", "to"];

/// A negatable match for the rule or, written with `!`, for its `except`.
fn split<T>(m: Option<(Spanned<T>, bool)>, except: &mut Option<Spanned<T>>) -> Option<Spanned<T>> {
    match m {
        Some((v, true)) => {
            *except = Some(v);
            None
        }
        Some((v, false)) => Some(v),
        None => None,
    }
}

fn parse_rule(cx: &mut Cx, r: &mut Reader) -> Option<RuleDecl> {
    let verdict = match r.keyword() {
        "allow" => Verdict::Accept,
        "deny" => Verdict::Drop,
        _ => Verdict::Reject,
    };
    let verdict = Spanned::new(verdict, r.name_span);
    let marking = r.keyword() == "mark";
    // Mark and notrack rules run before routing (`in`) or on what the namespace sends (`out`).
    let direction = if marking || r.keyword() == "notrack" {
        r.arg(cx, 0, "a direction (`in` or `out`)").and_then(|v| direction(cx, v, false))
    } else {
        r.arg(cx, 0, "a direction (`in`, `out` or `forward`)").and_then(|v| direction(cx, v, true))
    };
    // Most rules give only common keys: those are found in one walk over the properties, and
    // the other 24 are not looked up one by one (each a search of the properties). None of them
    // given, they all read as unset and report nothing.
    let common = if marking { None } else { r.props_if_only(&COMMON_RULE_KEYS) };
    let only_common = common.is_some();
    // The value of `COMMON_RULE_KEYS[i]`: found in the walk, or asked for now.
    let mut prop = |cx: &mut Cx, i: usize| match &common {
        Some(found) => found[i],
        None => r.prop(cx, COMMON_RULE_KEYS[i]),
    };
    let proto = prop(cx, 0).and_then(|v| proto(cx, v));
    let mut except = ExceptDecl::default();
    let dport = prop(cx, 1).and_then(|v| port_match(cx, v));
    let dport = split(dport, &mut except.dport);
    let sport = prop(cx, 2).and_then(|v| port_match(cx, v));
    let sport = split(sport, &mut except.sport);
    for ports in [&dport, &sport, &except.dport, &except.sport].into_iter().flatten() {
        if !proto.as_ref().is_some_and(|p| p.value.has_ports()) {
            cx.error(code::MISSING_PROPERTY, ports.span, "ports need a protocol that has ports").help =
                Some("add `proto=\"tcp\"`, `proto=\"udp\"` or `proto=\"sctp\"`".into());
        }
    }
    let from = prop(cx, 3).and_then(|v| negatable(cx, v, "network", parse_addr_match));
    let from = split(from, &mut except.from);
    let to = prop(cx, 4).and_then(|v| negatable(cx, v, "network", parse_addr_match));
    let to = split(to, &mut except.to);
    let more = if only_common {
        let except = Rare::new(except);
        if except.is_empty() {
            Rare::default()
        } else {
            Rare::new(RuleDeclMore { except, ..RuleDeclMore::default() })
        }
    } else {
        Rare::new(rule_more(cx, r, proto.as_ref(), direction.as_ref(), marking, except))
    };
    Some(RuleDecl { verdict, direction: direction?, proto, dport, sport, from, to, span: r.span, more })
}

/// The matches and statements of a rule most rules leave unset (all but [`COMMON_RULE_KEYS`]),
/// with the negated common matches already in `except`.
fn rule_more(
    cx: &mut Cx,
    r: &mut Reader,
    proto: Option<&Spanned<Proto>>,
    direction: Option<&Spanned<Direction>>,
    marking: bool,
    mut except: ExceptDecl,
) -> RuleDeclMore {
    let iif = r.prop(cx, "iif").and_then(|v| negatable(cx, v, "interface name", parse_link_name));
    let iif = split(iif, &mut except.iif);
    let oif = r.prop(cx, "oif").and_then(|v| negatable(cx, v, "interface name", parse_link_name));
    let oif = split(oif, &mut except.oif);
    let from_zone = r.prop(cx, "from-zone").and_then(|v| negatable(cx, v, "zone name", parse_name));
    let from_zone = split(from_zone, &mut except.from_zone);
    let to_zone = r.prop(cx, "to-zone").and_then(|v| negatable(cx, v, "zone name", parse_name));
    let to_zone = split(to_zone, &mut except.to_zone);
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
    let family =
        r.prop(cx, "family").and_then(|v| v.keyword(cx, "family", &[("ipv4", Family::Ipv4), ("ipv6", Family::Ipv6)]));
    let (icmp_types, icmp_code) = icmp_match(cx, r, proto);
    let limit = limit(cx, r);
    let burst =
        r.prop(cx, "burst").and_then(|v| v.int(cx, "burst", 1, i128::from(u32::MAX))).map(|b| b.map(|b| b as u32));
    if let (Some(b), None) = (&burst, &limit) {
        cx.error(code::MISSING_PROPERTY, b.span, "`burst` needs a rate limit").help =
            Some("add `limit=\"10/second\"` or `limit-per-source=\"10/second\"`".into());
    }
    let conn_limit = r
        .prop(cx, "conn-limit")
        .and_then(|v| v.int(cx, "connection limit", 1, i128::from(u32::MAX)))
        .map(|b| b.map(|b| b as u32));
    let log = r.prop(cx, "log").and_then(|v| v.bool(cx, "log"));
    let log_prefix = r.prop(cx, "log-prefix").and_then(|v| v.parse(cx, "log prefix", parse_log_prefix));
    let log_level = r.prop(cx, "log-level").and_then(|v| v.keyword(cx, "log level", &LogLevel::ALL));
    if let Some(off) = log.as_ref().filter(|l| !l.value) {
        if let Some(span) = log_prefix.as_ref().map(|p| p.span).or(log_level.as_ref().map(|l| l.span)) {
            let d = cx.error(code::INVALID_VALUE, span, "a log prefix or level on a rule that does not log");
            d.secondary.push(crate::diagnostic::Label { span: off.span, message: "logging is turned off here".into() });
            d.help = Some("remove `log=#false`: `log-prefix` and `log-level` turn logging on".into());
        }
    }
    let counter = r.prop(cx, "counter").and_then(|v| v.parse(cx, "counter name", parse_name));
    let mark = r.prop(cx, "mark").and_then(|v| negatable(cx, v, "mark", parse_mark));
    let mark = split(mark, &mut except.mark);
    let ct_mark = r.prop(cx, "ct-mark").and_then(|v| negatable(cx, v, "mark", parse_mark));
    let ct_mark = split(ct_mark, &mut except.ct_mark);
    let uid = r.prop(cx, "uid").and_then(|v| negatable(cx, v, "user id", parse_id));
    let uid = split(uid, &mut except.uid);
    let gid = r.prop(cx, "gid").and_then(|v| negatable(cx, v, "group id", parse_id));
    let gid = split(gid, &mut except.gid);
    let pkttype = r.prop(cx, "pkttype").and_then(|v| {
        v.keyword(
            cx,
            "packet type",
            &[("unicast", PktType::Unicast), ("broadcast", PktType::Broadcast), ("multicast", PktType::Multicast)],
        )
    });
    if let Some(d) = direction {
        let owner = [&uid, &gid, &except.uid, &except.gid].into_iter().flatten().next();
        if let (Some(o), true) = (owner, d.value != Direction::Out) {
            cx.error(code::INVALID_VALUE, o.span, "only packets this namespace sends have a local user").help =
                Some("match `uid`/`gid` on `out` rules; arriving and forwarded packets have no socket".into());
        }
        if let (Some(p), Direction::Out) = (&pkttype, d.value) {
            cx.error(code::INVALID_VALUE, p.span, "outgoing packets have no link-layer packet type yet").help =
                Some("match `pkttype` on `in` or `forward` rules; for outgoing traffic match the destination (`to=\"224.0.0.0/4\"`)".into());
        }
    }
    let (mut set_mark, mut set_ct_mark) = (None, None);
    if marking {
        set_mark = r.prop(cx, "set-mark").and_then(|v| v.parse(cx, "mark", parse_mark));
        set_ct_mark = r.prop(cx, "set-ct-mark").and_then(|v| v.parse(cx, "mark", parse_mark));
        if set_mark.is_none() && set_ct_mark.is_none() && !r.node.recovered {
            cx.error(code::MISSING_PROPERTY, r.name_span, "a `mark` rule sets nothing").help =
                Some("add `set-mark=\"0x1\"` (the packet) or `set-ct-mark=\"0x1\"` (its connection)".into());
        }
    }
    // Only filter rules add to sets: a mark or notrack rule is not where a source is judged.
    let (add_to, add_to_key) = if matches!(r.keyword(), "allow" | "deny" | "reject") {
        let set = r.prop(cx, "add-to").and_then(|v| v.parse(cx, "set reference", parse_set_ref));
        let key = r
            .prop(cx, "add-to-key")
            .and_then(|v| v.keyword(cx, "address to add", &[("src", AddrKey::Source), ("dst", AddrKey::Destination)]));
        if let (Some(k), None) = (&key, &set) {
            cx.error(code::MISSING_PROPERTY, k.span, "`add-to-key` without a set to add to").help =
                Some("add `add-to=\"@SET\"` naming a dynamic set".into());
        }
        (set, key)
    } else {
        (None, None)
    };
    let comment = r.prop(cx, "comment").and_then(|v| v.string(cx, "comment"));
    RuleDeclMore {
        iif,
        oif,
        from_zone,
        to_zone,
        state,
        family,
        icmp_types,
        icmp_code,
        except: Rare::new(except),
        limit,
        burst,
        conn_limit,
        log,
        log_prefix,
        log_level,
        counter,
        mark,
        ct_mark,
        uid,
        gid,
        pkttype,
        set_mark,
        set_ct_mark,
        add_to,
        add_to_key,
        comment,
    }
}

/// `"@NAME"`: a set named in `add-to` (the name span excludes the `@`).
fn parse_set_ref(text: &str) -> Result<String, ValueError> {
    match text.strip_prefix('@') {
        Some(set) => parse_name(set).map_err(|e| ValueError { start: e.start + 1, end: e.end + 1, ..e }),
        None => Err(ValueError {
            start: 0,
            end: text.len(),
            message: format!("`{text}` is not a set reference"),
            help: Some(format!("name a dynamic set of this firewall with `@`: `\"@{text}\"`")),
        }),
    }
}

/// The dynamic side of a `set`: `dynamic=#true` with optional `timeout`, `size` and `family`.
/// `timeout`, `size` or `family` without it is an error (a static set has no run-time side);
/// seed elements of a dynamic set are addresses, as rules add them.
fn dynamic_set(cx: &mut Cx, c: &mut Reader, elements: &[Spanned<ipnet::IpNet>]) -> Option<DynamicSetDecl> {
    let dynamic = c.prop(cx, "dynamic").and_then(|v| v.bool(cx, "dynamic"));
    let timeout = c.prop(cx, "timeout").and_then(|v| v.parse(cx, "timeout", parse_duration));
    let size = c.prop(cx, "size").and_then(|v| v.int(cx, "set size", 1, 1 << 24)).map(|s| s.map(|v| v as u32));
    let family =
        c.prop(cx, "family").and_then(|v| v.keyword(cx, "family", &[("ipv4", Family::Ipv4), ("ipv6", Family::Ipv6)]));
    let on = dynamic.as_ref().filter(|d| d.value);
    if on.is_none() {
        let spans = [timeout.as_ref().map(|t| t.span), size.as_ref().map(|s| s.span), family.as_ref().map(|f| f.span)];
        if let Some(span) = spans.into_iter().flatten().next() {
            cx.error(code::MISSING_PROPERTY, span, "only a dynamic set has a timeout, a size or a family").help =
                Some("add `dynamic=#true` to the set, or remove this property".into());
        }
        return None;
    }
    for e in elements {
        let (len, max) = (e.value.prefix_len(), e.value.max_prefix_len());
        if len != max {
            cx.error(code::INVALID_VALUE, e.span, "a dynamic set holds addresses, not networks").help =
                Some("list single addresses: rules add one source address at a time".into());
        } else if let Some(f) = family.as_ref().filter(|f| Family::of(e.value.addr()) != f.value) {
            let d = cx.error(code::INVALID_VALUE, e.span, "this element is not of the set's family");
            d.secondary.push(crate::diagnostic::Label { span: f.span, message: "the set's family".into() });
            d.help = Some("remove the element, or the set's `family`".into());
        }
    }
    on.map(|d| DynamicSetDecl { timeout, size, family, span: d.span })
}

/// `use-rules "NAME" ["NAME"...]`, standing after `at` rules of its block.
fn rules_use(cx: &mut Cx, c: &mut Reader, at: usize) -> Option<RulesUse> {
    let names: Vec<Name> =
        c.rest_args(0).into_iter().filter_map(|v| v.parse(cx, "rule group name", parse_name)).collect();
    if names.is_empty() {
        c.arg(cx, 0, "a rule group name");
        return None;
    }
    Some(RulesUse { names, at, span: c.span })
}

/// A top-level `rules "NAME" { … }`: `allow`, `deny`, `reject` and `use-rules`, nothing else
/// (zones, sets and policies belong to the firewall that uses the group).
fn parse_rule_group(cx: &mut Cx, r: &mut Reader, name: Option<Name>) -> Option<RuleGroupDecl> {
    let (mut rules, mut uses) = (Vec::new(), Vec::new());
    for child in r.all_children() {
        let mut c = Reader::new(cx, child);
        match c.keyword() {
            "allow" | "deny" | "reject" => rules.extend(parse_rule(cx, &mut c)),
            "use-rules" => uses.extend(rules_use(cx, &mut c, rules.len())),
            other => {
                let d = cx.error(code::UNKNOWN_NODE, c.name_span, format!("`{other}` is not allowed inside `rules`"));
                d.help = Some(match crate::diagnostic::closest(other, ["allow", "deny", "reject", "use-rules"]) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => "a rule group holds `allow`, `deny`, `reject` and `use-rules`; zones, sets and policies \
                             go in the `firewall` that uses it"
                        .into(),
                });
                continue;
            }
        }
        c.finish(cx);
    }
    Some(RuleGroupDecl { name: name?, rules, uses, span: r.span })
}

/// A numeric user or group id.
fn parse_id(text: &str) -> Result<u32, ValueError> {
    text.parse().map_err(|_| ValueError {
        start: 0,
        end: text.len(),
        message: format!("`{text}` is not a numeric id"),
        help: Some("use the number (`id -u NAME`): names differ between hosts and containers".into()),
    })
}

/// `icmp-type="echo-request,echo-reply"` (names nft uses, or numbers 0-255) and `icmp-code=N`,
/// read against the rule's `proto` (`icmp` or `icmpv6`: the names differ).
fn icmp_match(
    cx: &mut Cx,
    r: &mut Reader,
    proto: Option<&Spanned<Proto>>,
) -> (Option<Spanned<Vec<u8>>>, Option<Spanned<u8>>) {
    let types = r.prop(cx, "icmp-type").and_then(|v| v.string(cx, "ICMP type"));
    let code = r.prop(cx, "icmp-code").and_then(|v| v.int(cx, "ICMP code", 0, 255)).map(|c| c.map(|c| c as u8));
    let table = match proto.map(|p| p.value) {
        Some(Proto::Icmp) => ICMP_TYPES,
        Some(Proto::Icmpv6) => ICMPV6_TYPES,
        _ => {
            if let Some(span) = types.as_ref().map(|t| t.span).or(code.as_ref().map(|c| c.span)) {
                cx.error(code::MISSING_PROPERTY, span, "ICMP types and codes need an ICMP protocol").help =
                    Some("add `proto=\"icmp\"` (IPv4) or `proto=\"icmpv6\"` (IPv6)".into());
            }
            return (None, None);
        }
    };
    let types = types.and_then(|t| {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut ok = true;
        for part in t.value.split(',') {
            let span = if t.span.len() == t.value.len() { t.span.sub(pos, pos + part.len()) } else { t.span };
            pos += part.len() + 1;
            let name = part.trim();
            match table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).or_else(|| name.parse::<u8>().ok()) {
                Some(v) => out.push(v),
                None => {
                    ok = false;
                    let family = if std::ptr::eq(table, ICMP_TYPES) { "ICMP" } else { "ICMPv6" };
                    let d = cx.error(code::INVALID_VALUE, span, format!("`{name}` is not an {family} type"));
                    d.help = Some(match crate::diagnostic::closest(name, table.iter().map(|(n, _)| *n)) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => "use a type name such as `echo-request`, or a number from 0 to 255".into(),
                    });
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        ok.then(|| Spanned::new(out, t.span))
    });
    if let (Some(c), None) = (&code, &types) {
        cx.error(code::MISSING_PROPERTY, c.span, "an ICMP code needs an ICMP type").help =
            Some("add `icmp-type=\"destination-unreachable\"` (codes are numbered per type)".into());
    }
    (types, code)
}

/// `limit="N/UNIT"` or `limit-per-source="N/UNIT"` (one of the two).
fn limit(cx: &mut Cx, r: &mut Reader) -> Option<Spanned<RateLimit>> {
    let global = r.prop(cx, "limit").and_then(|v| v.parse(cx, "rate", |t| parse_rate(t, false)));
    let per_source = r.prop(cx, "limit-per-source").and_then(|v| v.parse(cx, "rate", |t| parse_rate(t, true)));
    match (global, per_source) {
        (Some(g), Some(p)) => {
            let d = cx.error(code::INVALID_VALUE, p.span, "a rule has one rate limit");
            d.secondary.push(crate::diagnostic::Label { span: g.span, message: "the other limit".into() });
            d.help = Some("keep `limit` (all packets together) or `limit-per-source` (each source address)".into());
            Some(g)
        }
        (g, p) => g.or(p),
    }
}

/// `10/second`, `600/minute`, `5/hour`, `100/day`.
fn parse_rate(text: &str, per_source: bool) -> Result<RateLimit, ValueError> {
    let help = "write a rate as `COUNT/UNIT`, e.g. `10/second`, `600/minute`, `5/hour`";
    let Some((count, unit)) = text.split_once('/') else {
        return Err(ValueError {
            start: 0,
            end: text.len(),
            message: format!("`{text}` is not a rate"),
            help: Some(help.into()),
        });
    };
    let count: u32 = match count.parse() {
        Ok(c) if c > 0 => c,
        _ => {
            return Err(ValueError {
                start: 0,
                end: count.len(),
                message: format!("`{count}` is not a packet count"),
                help: Some("the count is a whole number from 1".into()),
            })
        }
    };
    let unit = match unit {
        "second" => RateUnit::Second,
        "minute" => RateUnit::Minute,
        "hour" => RateUnit::Hour,
        "day" => RateUnit::Day,
        other => {
            let at = text.len() - other.len();
            return Err(ValueError {
                start: at,
                end: text.len(),
                message: format!("`{other}` is not a time unit"),
                help: Some("use `second`, `minute`, `hour` or `day`".into()),
            });
        }
    };
    Ok(RateLimit { count, unit, per_source })
}

/// A log prefix: printable ASCII without quotes or backslashes, at most 127 bytes (the kernel's
/// `NF_LOG_PREFIXLEN` with its NUL).
fn parse_log_prefix(text: &str) -> Result<String, ValueError> {
    if let Some((i, c)) =
        text.char_indices().find(|(_, c)| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\\'))
    {
        return Err(ValueError {
            start: i,
            end: i + c.len_utf8(),
            message: format!("log prefixes cannot contain {c:?}"),
            help: Some("use printable ASCII without quotes or backslashes".into()),
        });
    }
    if text.len() > 127 {
        return Err(ValueError {
            start: 127,
            end: text.len(),
            message: format!("a log prefix is at most 127 bytes, this one is {}", text.len()),
            help: Some("shorten the prefix".into()),
        });
    }
    Ok(text.to_string())
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

#[cfg(test)]
mod rule_match_tests {
    use super::*;

    /// One diagnostic per mistake in a rule's matches, on the offending text.
    fn rule_diagnostics(rule: &str) -> Vec<(&'static str, String, Option<String>)> {
        let src = format!("node \"a\" {{ firewall {{ {rule}; }}; }}");
        let p = parse_str("t.kdl", &src);
        p.diagnostics
            .iter()
            .map(|d| {
                let s = d.primary.span;
                (d.code.id, src[s.start as usize..s.end as usize].to_string(), d.help.clone())
            })
            .collect()
    }

    #[test]
    fn rule_matches_parse_with_negation_icmp_limits_and_logging() {
        let src = r#"node "a" { firewall {
            allow in proto="icmpv6" icmp-type="echo-request,packet-too-big,200"
            allow in proto="icmp" icmp-type="destination-unreachable" icmp-code=4
            deny in from="!@bad" to="!10.0.0.0/8" proto="tcp" port="!22,80" iif="!eth0" from-zone="!lan"
            allow in family="ipv6" limit-per-source="10/minute" burst=5 conn-limit=3 log-prefix="x: " log-level="info" counter="c1"
        }; }"#;
        let p = parse_str("t.kdl", src);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let rules = &p.spec.nodes[0].body.firewalls[0].rules;
        assert_eq!(rules[0].icmp_types.as_ref().unwrap().value, [2, 128, 200]);
        assert_eq!(rules[1].icmp_types.as_ref().unwrap().value, [3]);
        assert_eq!(rules[1].icmp_code.as_ref().unwrap().value, 4);
        let e = &rules[2].except;
        assert!(rules[2].from.is_none() && rules[2].dport.is_none() && rules[2].iif.is_none());
        assert_eq!(e.from.as_ref().unwrap().value, AddrMatch::Set("bad".into()));
        assert_eq!(e.to.as_ref().unwrap().value, AddrMatch::Net("10.0.0.0/8".parse().unwrap()));
        assert_eq!(e.dport.as_ref().unwrap().value.to_string(), "22,80");
        assert_eq!(e.iif.as_ref().unwrap().value, "eth0");
        assert_eq!(e.from_zone.as_ref().unwrap().value, "lan");
        // The span of a negated value starts after the `!`.
        assert_eq!(&src[e.to.as_ref().unwrap().span.start as usize..][..11], "10.0.0.0/8\"");
        let r = &rules[3];
        assert_eq!(r.family.as_ref().unwrap().value, Family::Ipv6);
        assert_eq!(r.limit.as_ref().unwrap().value, RateLimit { count: 10, unit: RateUnit::Minute, per_source: true });
        assert_eq!(r.burst.as_ref().unwrap().value, 5);
        assert_eq!(r.conn_limit.as_ref().unwrap().value, 3);
        assert_eq!(r.log_prefix.as_ref().unwrap().value, "x: ");
        assert_eq!(r.log_level.as_ref().unwrap().value, LogLevel::Info);
        assert_eq!(r.counter.as_ref().unwrap().value, "c1");
        let p = parse_str(
            "t.kdl",
            r#"node "a" { firewall { mark out proto="tcp" set-mark="0x100/0xff00" set-ct-mark="7"; allow in mark="!16"; }; }"#,
        );
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let fw = &p.spec.nodes[0].body.firewalls[0];
        assert_eq!(fw.marks[0].set_mark.as_ref().unwrap().value, Mark { value: 0x100, mask: Some(0xff00) });
        assert_eq!(fw.marks[0].set_ct_mark.as_ref().unwrap().value, Mark { value: 7, mask: None });
        assert_eq!(fw.rules[0].except.mark.as_ref().unwrap().value, Mark { value: 16, mask: None });
    }

    #[test]
    fn each_mistake_in_a_rule_match_is_one_diagnostic_on_its_text() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"allow in icmp-type="echo-request""#, "missing-property", "echo-request"),
            (r#"allow in proto="tcp" icmp-code=3"#, "missing-property", "3"),
            (r#"allow in proto="icmp" icmp-code=3"#, "missing-property", "3"),
            (r#"allow in proto="icmp" icmp-type="echo-requst""#, "invalid-value", "echo-requst"),
            (
                r#"allow in proto="icmp" icmp-type="echo-request,nd-neighbor-solicit""#,
                "invalid-value",
                "nd-neighbor-solicit",
            ),
            (r#"allow in proto="icmp" icmp-type="echo-request" icmp-code=256"#, "invalid-value", "256"),
            (r#"allow in family="ip4""#, "invalid-value", "ip4"),
            (r#"allow in from="!10.0.0.1/8""#, "invalid-value", "10.0.0.1"),
            (r#"allow in from="!""#, "invalid-value", "!"),
            (r#"allow in port="!22""#, "missing-property", "22"),
            (r#"allow in proto="tcp" port="!0""#, "invalid-value", "0"),
            (r#"allow in iif="!eth/0""#, "invalid-value", "/"),
            (r#"allow in from-zone="!l an""#, "invalid-value", " "),
            (r#"zone "z" "*""#, "invalid-value", "*"),
            (r#"zone "z" "eth0" "abcdefghijklmnop*""#, "invalid-value", "op"),
            (r#"zone "z" "et/h*""#, "invalid-value", "/"),
            (r#"allow in limit="10/sec""#, "invalid-value", "sec"),
            (r#"allow in limit="ten/second""#, "invalid-value", "ten"),
            (r#"allow in limit="10""#, "invalid-value", "10"),
            (r#"allow in limit="1/second" limit-per-source="1/second""#, "invalid-value", "1/second"),
            (r#"allow in burst=5"#, "missing-property", "5"),
            (r#"allow in conn-limit=0"#, "invalid-value", "0"),
            (r#"allow in log-level="warning""#, "invalid-value", "warning"),
            (r#"allow in log-prefix="a\u{7}b""#, "invalid-value", "\"a\\u{7}b\""),
            (r#"allow in log=#false log-prefix="x""#, "invalid-value", "x"),
            (r#"allow in counter="a b""#, "invalid-value", " "),
            (r#"allow in mark="0x1g""#, "invalid-value", "0x1g"),
            (r#"allow in mark="0x100/0xff""#, "invalid-value", "0x100"),
            (r#"allow in ct-mark="1/x""#, "invalid-value", "x"),
            (r#"allow in set-mark="1""#, "unknown-property", "set-mark"),
            (r#"mark in iif="eth0""#, "missing-property", "mark"),
            (r#"mark forward set-mark="1""#, "invalid-value", "forward"),
            (r#"allow in uid=0"#, "invalid-value", "0"),
            (r#"allow out gid="!root""#, "invalid-value", "root"),
            (r#"allow out pkttype="broadcast""#, "invalid-value", "broadcast"),
            (r#"allow in pkttype="anycast""#, "invalid-value", "anycast"),
            (r#"allow in proto="igmp" port=1"#, "missing-property", "1"),
        ];
        for (rule, code, text) in cases {
            let got = rule_diagnostics(rule);
            assert_eq!(got.len(), 1, "{rule}: {got:?}");
            assert_eq!(got[0].0, *code, "{rule}: {got:?}");
            assert_eq!(got[0].1, *text, "{rule}: {got:?}");
            assert!(got[0].2.is_some(), "{rule}: no help: {got:?}");
        }
        // Source NAT translates what it matches: `!` is refused there.
        let got = parse_str("t.kdl", r#"node "a" { masquerade from="!10.0.0.0/8"; }"#);
        assert_eq!(got.diagnostics.iter().map(|d| d.code.id).collect::<Vec<_>>(), ["invalid-value"]);
    }
}
