//! AST -> IR: expands templates, gives every namespace and link an id, resolves names
//! (reporting `undefined-reference` with "did you mean" and `duplicate-name` with the first
//! declaration), and lowers first-class sysctls into each namespace's sysctl map.

use crate::ir::*;
use ipnet::IpNet;
use netcfg_lang::ast::{self, NsBody, RouteDst, SysctlValue};
use netcfg_lang::diagnostic::closest;
use netcfg_lang::rare::Rare;
use netcfg_lang::value::SysctlPath;
use netcfg_lang::vocab::{RouteScope, RouteType};
use netcfg_lang::{code, Code, Diagnostic, Span, Spanned};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const UNDEFINED_REFERENCE: Code = Code::error("undefined-reference", "a name that refers to nothing declared");
pub const INVALID_REFERENCE: Code = Code::error("invalid-reference", "a name that refers to the wrong kind of thing");
pub const DUPLICATE_NAME: Code = Code::error("duplicate-name", "a name declared twice where it must be unique");
pub const TEMPLATE_CYCLE: Code =
    Code::error("template-cycle", "a template that uses itself, directly or through other templates");
pub const CONFLICTING_SYSCTL: Code =
    Code::error("conflicting-sysctl", "a sysctl set to two different values in one namespace");
pub const CONFLICTING_ROUTES: Code =
    Code::error("conflicting-routes", "two routes with the same table, destination and metric in one namespace");
pub const RULE_GROUP_CYCLE: Code =
    Code::error("rule-group-cycle", "a firewall rule group that uses itself, directly or through other groups");
pub const DUPLICATE_RULE: Code =
    Code::error("duplicate-rule", "two policy routing rules of one namespace that the kernel cannot tell apart");

/// Every code resolution reports.
pub const CODES: &[Code] = &[
    UNDEFINED_REFERENCE,
    INVALID_REFERENCE,
    DUPLICATE_NAME,
    TEMPLATE_CYCLE,
    CONFLICTING_SYSCTL,
    CONFLICTING_ROUTES,
    DUPLICATE_RULE,
    RULE_GROUP_CYCLE,
];

pub fn resolve(spec: &ast::Spec, diags: &mut Vec<Diagnostic>) -> Fleet {
    resolve_nodes(spec, spec.nodes.iter(), diags)
}

/// [`resolve`] taking the AST by value: each node's declaration is dropped as soon as its IR is
/// built, so a fleet's AST and IR are not both whole at once.
pub fn resolve_owned(mut spec: ast::Spec, diags: &mut Vec<Diagnostic>) -> Fleet {
    let nodes = std::mem::take(&mut spec.nodes);
    resolve_nodes(&spec, nodes.into_iter(), diags)
}

fn resolve_nodes<N: std::borrow::Borrow<ast::NodeDecl>>(
    spec: &ast::Spec,
    nodes: impl Iterator<Item = N>,
    diags: &mut Vec<Diagnostic>,
) -> Fleet {
    let mut templates: HashMap<&str, &ast::TemplateDecl> = HashMap::new();
    for t in &spec.templates {
        if let Some(first) = templates.get(t.name.value.as_str()) {
            diags.push(duplicate("template", &t.name, first.name.span));
        } else {
            templates.insert(&t.name.value, t);
        }
        check_params(t, diags);
    }
    let groups = crate::rule_groups::RuleGroups::new(spec, diags);
    let mut fleet = Fleet::default();
    let mut seen: HashMap<String, Span> = HashMap::new();
    for decl in nodes {
        let decl = decl.borrow();
        if let Some(first) = seen.get(decl.name.value.as_str()) {
            diags.push(duplicate("node", &decl.name, *first));
            continue;
        }
        seen.insert(decl.name.value.clone(), decl.name.span);
        // A body without templates is its own expansion: not copied (a copy of every rule and
        // route of the node was a quarter of `check`'s peak memory on 100,000 rules).
        let body = if needs_expansion(&decl.body) {
            std::borrow::Cow::Owned(expand(&decl.body, &templates, &mut Vec::new(), diags))
        } else {
            std::borrow::Cow::Borrowed(&decl.body)
        };
        let id = NodeId(fleet.nodes.len() as u32);
        fleet.nodes.push(NodeBuilder::new(id, decl, &groups, diags).build(&body));
    }
    fleet
}

pub(crate) fn duplicate(what: &str, name: &Spanned<String>, first: Span) -> Diagnostic {
    Diagnostic::error(DUPLICATE_NAME, name.span, format!("{what} `{}` is declared twice", name.value))
        .with_label("declared again here")
        .with_secondary(first, "first declared here")
        .with_help(format!("rename one of them, or remove the second `{}`", name.value))
}

/// Whether [`expand`] would return something else than `body` itself: it uses a template, or
/// declares a namespace twice (the last one is kept), here or in a namespace.
fn needs_expansion(body: &NsBody) -> bool {
    let mut names = std::collections::HashSet::new();
    !body.uses.is_empty()
        || !body.netns.iter().all(|n| names.insert(n.name.value.as_str()))
        || body.netns.iter().any(|n| needs_expansion(&n.body))
}

/// Flattens `use`d templates into a body. The body's own links, namespaces, services and
/// sysctls replace a template's of the same name (a node overrides its template); everything
/// else is appended.
fn expand(
    body: &NsBody,
    templates: &HashMap<&str, &ast::TemplateDecl>,
    stack: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) -> NsBody {
    let mut out = NsBody::default();
    for u in &body.uses {
        let Some(t) = templates.get(u.name.value.as_str()) else {
            diags.push(undefined("template", &u.name, templates.keys().copied(), None));
            continue;
        };
        if stack.contains(&u.name.value) {
            diags.push(
                Diagnostic::error(TEMPLATE_CYCLE, u.name.span, format!("template `{}` uses itself", u.name.value))
                    .with_secondary(t.name.span, "template declared here")
                    .with_help("remove the `use` that closes the cycle"),
            );
            continue;
        }
        let instance;
        let template_body = match &t.raw {
            None => {
                if let Some((key, _)) = u.args.first() {
                    diags.push(
                        Diagnostic::error(
                            code::UNKNOWN_PROPERTY,
                            key.span,
                            format!("template `{}` has no parameters", t.name.value),
                        )
                        .with_secondary(t.name.span, "template declared here")
                        .with_help(format!(
                            "remove the arguments, or declare `param \"{}\"` in the template",
                            key.value
                        )),
                    );
                }
                &t.body
            }
            Some(raw) => {
                let Some(env) = bind(t, u, diags) else { continue };
                let (body, found) = netcfg_lang::template::instantiate(raw, &env, u.span);
                // A string with an undeclared `${NAME}` is reported as that, not as a bad value.
                let unbound: Vec<Span> = netcfg_lang::template::placeholders(raw)
                    .into_iter()
                    .filter(|p| !env.contains_key(p.name.value.as_str()))
                    .map(|p| p.entry)
                    .collect();
                for d in found {
                    let at = d.primary.span;
                    if unbound.iter().any(|e| e.file == at.file && e.start <= at.start && at.end <= e.end) {
                        continue;
                    }
                    // What does not depend on the arguments is reported once, not once per use.
                    let seen = diags
                        .iter()
                        .any(|e| e.code.id == d.code.id && e.primary.span == d.primary.span && e.message == d.message);
                    if !seen {
                        diags.push(d);
                    }
                }
                instance = body;
                &instance
            }
        };
        stack.push(u.name.value.clone());
        let expanded = expand(template_body, templates, stack, diags);
        stack.pop();
        append(&mut out, expanded);
    }
    let own = NsBody { uses: Vec::new(), netns: Vec::new(), ..body.clone() };
    override_by_name(&mut out.links, &own.links, |l| l.name.value.clone());
    override_by_name(&mut out.services, &own.services, |s| s.name.value.clone());
    override_by_name(&mut out.sysctls, &own.sysctls, |s| s.path.value.0.clone());
    override_by_name(&mut out.listeners, &own.listeners, |s| s.name.value.clone());
    override_by_name(&mut out.publishes, &own.publishes, |p| p.name.value.clone());
    override_by_name(&mut out.tables, &own.tables, |t| t.name.value.clone());
    append(
        &mut out,
        NsBody {
            links: vec![],
            services: vec![],
            sysctls: vec![],
            listeners: vec![],
            tables: vec![],
            publishes: vec![],
            ..own
        },
    );
    for ns in &body.netns {
        let inner = expand(&ns.body, templates, stack, diags);
        out.netns.retain(|n| n.name.value != ns.name.value);
        out.netns.push(ast::NetnsDecl { name: ns.name.clone(), body: inner, span: ns.span });
    }
    out
}

/// A template's parameters: unique names, and every `${NAME}` in its body names one.
fn check_params(t: &ast::TemplateDecl, diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for p in &t.params {
        if let Some(first) = seen.get(p.name.value.as_str()) {
            diags.push(duplicate("parameter", &p.name, *first));
        } else {
            seen.insert(&p.name.value, p.name.span);
        }
    }
    let Some(raw) = &t.raw else { return };
    for ph in netcfg_lang::template::placeholders(raw) {
        if !seen.contains_key(ph.name.value.as_str()) {
            let d = undefined("parameter", &ph.name, seen.keys().copied(), None);
            let d = match d.help.as_deref() {
                Some(h) if h.starts_with("declare") => d.with_help(format!(
                    "declare it in the template: `param \"{}\"`, or write `$${{` for a literal `${{`",
                    ph.name.value
                )),
                _ => d,
            };
            diags.push(d);
        }
    }
}

/// The values of a template's parameters at one `use`: the arguments, else the defaults.
/// `None` (reported) when an argument names no parameter or a parameter has no value.
fn bind<'t>(
    t: &'t ast::TemplateDecl,
    u: &'t ast::UseDecl,
    diags: &mut Vec<Diagnostic>,
) -> Option<HashMap<&'t str, netcfg_lang::template::Binding<'t>>> {
    use netcfg_lang::template::Binding;
    let mut ok = true;
    let mut env = HashMap::new();
    for (key, value) in &u.args {
        if t.params.iter().any(|p| p.name.value == key.value) {
            env.insert(key.value.as_str(), Binding { value: &value.value, span: value.span, origin: "given here" });
            continue;
        }
        ok = false;
        let mut names: Vec<&str> = t.params.iter().map(|p| p.name.value.as_str()).collect();
        names.dedup();
        let help = match closest(&key.value, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("`{}` takes: {}", t.name.value, names.join(", ")),
        };
        diags.push(
            Diagnostic::error(
                code::UNKNOWN_PROPERTY,
                key.span,
                format!("template `{}` has no parameter `{}`", t.name.value, key.value),
            )
            .with_secondary(t.name.span, "template declared here")
            .with_help(help),
        );
    }
    for (i, p) in t.params.iter().enumerate() {
        // A parameter declared twice is reported by `check_params`; the first one counts.
        if env.contains_key(p.name.value.as_str()) || t.params[..i].iter().any(|q| q.name.value == p.name.value) {
            continue;
        }
        match &p.default {
            Some(d) => {
                env.insert(p.name.value.as_str(), Binding { value: &d.value, span: d.span, origin: "default" });
            }
            None => {
                ok = false;
                diags.push(
                    Diagnostic::error(
                        code::MISSING_PROPERTY,
                        u.span,
                        format!("template `{}` needs the parameter `{}`", t.name.value, p.name.value),
                    )
                    .with_secondary(p.name.span, "parameter declared here")
                    .with_help(format!("add `{}=…` to the `use`, or give the parameter a `default`", p.name.value)),
                );
            }
        }
    }
    ok.then_some(env)
}

/// `Some(None)` for an absent reference, `Some(Some(x))` for a resolved one, `None` for one
/// that did not resolve.
fn resolved<T>(r: Option<Option<T>>) -> Option<Option<T>> {
    match r {
        None => Some(None),
        Some(Some(x)) => Some(Some(x)),
        Some(None) => None,
    }
}

fn override_by_name<T: Clone>(base: &mut Vec<T>, own: &[T], key: impl Fn(&T) -> String) {
    if !base.is_empty() {
        let own_keys: std::collections::HashSet<String> = own.iter().map(&key).collect();
        base.retain(|b| !own_keys.contains(&key(b)));
    }
    base.extend(own.iter().cloned());
}

fn append(out: &mut NsBody, b: NsBody) {
    out.links.extend(b.links);
    out.unbuilt_links.extend(b.unbuilt_links);
    out.loopback.extend(b.loopback);
    out.routes.extend(b.routes);
    out.tables.extend(b.tables);
    out.rules.extend(b.rules);
    out.neighbors.extend(b.neighbors);
    out.sysctls.extend(b.sysctls);
    out.forwarding.extend(b.forwarding);
    out.rp_filter = b.rp_filter.or(out.rp_filter.take());
    out.bridge_netfilter = b.bridge_netfilter.or(out.bridge_netfilter.take());
    for ns in b.netns {
        out.netns.retain(|n| n.name.value != ns.name.value);
        out.netns.push(ns);
    }
    out.firewalls.extend(b.firewalls);
    out.services.extend(b.services);
    out.masquerades.extend(b.masquerades);
    out.snats.extend(b.snats);
    out.redirects.extend(b.redirects);
    out.listeners.extend(b.listeners);
    out.publishes.extend(b.publishes);
    out.netmaps.extend(b.netmaps);
    out.tproxies.extend(b.tproxies);
}

pub(crate) fn undefined<'a>(
    what: &str,
    name: &Spanned<String>,
    candidates: impl IntoIterator<Item = &'a str>,
    elsewhere: Option<String>,
) -> Diagnostic {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let d = Diagnostic::error(UNDEFINED_REFERENCE, name.span, format!("no {what} named `{}`", name.value))
        .with_label("not declared");
    match (closest(&name.value, candidates.iter().copied()), elsewhere) {
        (_, Some(where_)) => d.with_help(format!(
            "`{}` is declared in {where_}; a reference here must name a {what} of this namespace",
            name.value
        )),
        (Some(c), None) => d.with_help(format!("did you mean `{c}`?")),
        (None, None) if candidates.is_empty() => d.with_help(format!("declare the {what} first")),
        (None, None) => d.with_help(format!("declare it, or use one of: {}", candidates.join(", "))),
    }
}

struct NodeBuilder<'d> {
    node: Node,
    /// The fleet's rule groups, expanded into each firewall block that uses them.
    groups: &'d crate::rule_groups::RuleGroups<'d>,
    diags: &'d mut Vec<Diagnostic>,
    /// Links written but not built (their error is reported): references to them are quiet.
    unbuilt: Vec<(NetnsId, String)>,
    /// Links by namespace and name: references are resolved by hash, not by scanning the links
    /// (per namespace, so that a lookup by a borrowed name allocates nothing).
    link_index: foldhash::HashMap<NetnsId, foldhash::HashMap<String, LinkId>>,
    /// Table names declared per namespace (`table "NAME" id=N`), with the declaration's span.
    tables: HashMap<NetnsId, HashMap<String, (u32, Span)>>,
    /// Links whose kind could not be resolved (a `parent` or `dev` that is not there, already
    /// reported): they stand as placeholders, and what refers to them is not judged by kind.
    unresolved: std::collections::HashSet<LinkId>,
}

impl<'d> NodeBuilder<'d> {
    fn new(
        id: NodeId,
        decl: &ast::NodeDecl,
        groups: &'d crate::rule_groups::RuleGroups<'d>,
        diags: &'d mut Vec<Diagnostic>,
    ) -> NodeBuilder<'d> {
        let node = Node { id, name: decl.name.clone(), span: decl.span, namespaces: Vec::new(), links: Vec::new() };
        NodeBuilder {
            node,
            groups,
            diags,
            unbuilt: Vec::new(),
            link_index: Default::default(),
            tables: HashMap::new(),
            unresolved: Default::default(),
        }
    }

    fn build(mut self, body: &NsBody) -> Node {
        // Pass 1: namespaces, then every link (veth peers included), so references can point
        // anywhere in the node regardless of declaration order.
        self.add_netns(None, self.node.span, self.node.name.span);
        let mut bodies: Vec<(NetnsId, &NsBody)> = vec![(NetnsId::HOST, body)];
        for ns in &body.netns {
            if let Some(first) = self.node.find_netns(&ns.name.value) {
                let first = first.name.as_ref().map(|n| n.span).unwrap_or(ns.span);
                self.diags.push(duplicate("namespace", &ns.name, first));
                continue;
            }
            let id = self.add_netns(Some(ns.name.clone()), ns.span, ns.name.span);
            bodies.push((id, &ns.body));
        }
        let declared: usize = bodies.iter().map(|(_, b)| b.links.len()).sum();
        let mut pending = Vec::with_capacity(declared);
        self.node.links.reserve(declared);
        for (ns, b) in &bodies {
            self.unbuilt.extend(b.unbuilt_links.iter().map(|n| (*ns, n.value.clone())));
        }
        for (ns, b) in &bodies {
            for l in &b.links {
                if let Some(id) = self.declare_link(*ns, l) {
                    pending.push((id, *ns, l));
                }
            }
        }
        // Pass 2: every link's kind, then masters, so `master` may name a bridge declared
        // further down (or in a template used later): declaration order never matters.
        for (id, ns, l) in &pending {
            self.resolve_kind(*id, *ns, l);
        }
        for (id, ns, l) in &pending {
            self.resolve_masters(*id, *ns, l);
        }
        for (id, ns, l) in &pending {
            self.resolve_primary(*id, *ns, l);
        }
        for (id, _, l) in &pending {
            self.check_vlans(*id, l);
            if let (ast::LinkKindDecl::Veth { peer, .. }, LinkKind::Veth { peer: pid }) =
                (&l.kind, &self.node.link(*id).kind)
            {
                let pid = *pid;
                self.check_vlans(pid, peer);
            }
        }
        for (ns, b) in &bodies {
            let lo = self.find_link(*ns, "lo").map(|l| l.id.0 as usize).expect("every namespace has lo");
            let addresses = b.loopback.iter().map(|a| Address {
                net: a.net.value,
                prefix_route: a.prefix_route.as_ref().is_none_or(|p| p.value),
                span: a.net.span,
            });
            self.node.links[lo].addresses.extend(addresses);
        }
        self.nics_in_one_namespace();
        for (ns, b) in &bodies {
            self.declare_tables(*ns, b);
        }
        for (ns, b) in &bodies {
            self.resolve_body(*ns, b);
        }
        self.node
    }

    /// A NIC is one device, in one namespace at a time: an `ethernet` of one name in two
    /// namespaces of a node can never be applied (netcfg moves a NIC from the host namespace
    /// into the `netns` that declares it, and the host would lose it).
    fn nics_in_one_namespace(&mut self) {
        let mut first: HashMap<&str, &Link> = HashMap::new();
        for l in &self.node.links {
            if !matches!(l.kind, LinkKind::Ethernet) {
                continue;
            }
            let Some(earlier) = first.get(l.name.value.as_str()) else {
                first.insert(&l.name.value, l);
                continue;
            };
            let (a, b) = (self.node.netns(earlier.netns).display_name(), self.node.netns(l.netns).display_name());
            self.diags.push(
                Diagnostic::error(
                    DUPLICATE_NAME,
                    l.name.span,
                    format!("NIC `{}` is declared in namespace `{b}` and in `{a}`", l.name.value),
                )
                .with_label("declared again here")
                .with_secondary(earlier.name.span, format!("first declared here, in `{a}`"))
                .with_help("a NIC is in one namespace at a time: declare it only where it should be"),
            );
        }
    }

    fn add_netns(&mut self, name: Option<Spanned<String>>, span: Span, name_span: Span) -> NetnsId {
        let id = NetnsId(self.node.namespaces.len() as u32);
        self.node.namespaces.push(Netns {
            id,
            name,
            span,
            routes: Vec::new(),
            rules: Vec::new(),
            neighbors: Vec::new(),
            sysctls: BTreeMap::new(),
            firewall: Firewall { stateful: true, ..Firewall::default() },
            services: Vec::new(),
            masquerades: Vec::new(),
            snats: Vec::new(),
            redirects: Vec::new(),
            listeners: Vec::new(),
            publishes: Vec::new(),
            netmaps: Vec::new(),
            tproxies: Vec::new(),
        });
        let lo = LinkId(self.node.links.len() as u32);
        self.link_index.entry(id).or_default().insert("lo".to_string(), lo);
        self.node.links.push(Link {
            id: lo,
            name: Spanned::new("lo".into(), name_span),
            netns: id,
            kind: LinkKind::Loopback,
            mtu: None,
            mac: None,
            up: true,
            master: None,
            options: ast::LinkOptions::default(),
            hairpin: None,
            rp_filter: None,
            addresses: vec![
                Address {
                    net: IpNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8).expect("valid"),
                    prefix_route: true,
                    span: name_span,
                },
                Address {
                    net: IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid"),
                    prefix_route: true,
                    span: name_span,
                },
            ],
            span: name_span,
        });
        id
    }

    fn find_link(&self, ns: NetnsId, name: &str) -> Option<&Link> {
        self.link_index.get(&ns)?.get(name).map(|id| self.node.link(*id))
    }

    fn netns_by_name(&self, name: &Spanned<ast::NetnsName>) -> Option<NetnsId> {
        match &name.value {
            ast::NetnsName::Host => Some(NetnsId::HOST),
            ast::NetnsName::Named(n) => self.node.find_netns(n).map(|n| n.id),
        }
    }

    /// Gives a link (and a veth's peer) an id; reports duplicate names in one namespace.
    fn declare_link(&mut self, ns: NetnsId, l: &ast::LinkDecl) -> Option<LinkId> {
        if let Some(first) = self.find_link(ns, &l.name.value) {
            let d = if matches!(first.kind, LinkKind::Loopback) {
                Diagnostic::error(
                    DUPLICATE_NAME,
                    l.name.span,
                    "`lo` is the namespace's loopback link and always exists",
                )
                .with_help("pick another name")
            } else {
                duplicate("link", &l.name, first.name.span)
            };
            self.diags.push(d);
            return None;
        }
        let id = self.push_link(ns, l);
        if let ast::LinkKindDecl::Veth { peer, peer_netns } = &l.kind {
            let peer_ns = match peer_netns {
                None => Some(ns),
                Some(n) => {
                    let r = self.netns_by_name(n);
                    if r.is_none() {
                        let names: Vec<String> = self
                            .node
                            .namespaces
                            .iter()
                            .filter_map(|n| n.name.as_ref().map(|n| n.value.clone()))
                            .collect();
                        self.diags.push(undefined(
                            "namespace",
                            &Spanned::new(n.value.as_str().to_string(), n.span),
                            names.iter().map(|s| s.as_str()).chain([ast::NetnsName::HOST]),
                            None,
                        ));
                    }
                    r
                }
            };
            if let Some(peer_ns) = peer_ns {
                if let Some(first) = self.find_link(peer_ns, &peer.name.value) {
                    let first = first.name.span;
                    self.diags.push(duplicate("link", &peer.name, first));
                } else {
                    let pid = self.push_link(peer_ns, peer);
                    self.node.links[id.0 as usize].kind = LinkKind::Veth { peer: pid };
                    self.node.links[pid.0 as usize].kind = LinkKind::Veth { peer: id };
                }
            }
        }
        Some(id)
    }

    fn push_link(&mut self, ns: NetnsId, l: &ast::LinkDecl) -> LinkId {
        let id = LinkId(self.node.links.len() as u32);
        self.link_index.entry(ns).or_default().insert(l.name.value.clone(), id);
        self.node.links.push(Link {
            id,
            name: l.name.clone(),
            netns: ns,
            // Kinds with references are filled in by `resolve_link`.
            kind: LinkKind::Ethernet,
            mtu: l.mtu.clone(),
            mac: l.mac.clone(),
            up: l.state.as_ref().is_none_or(|s| s.value == ast::LinkState::Up),
            master: None,
            hairpin: l.hairpin.clone(),
            rp_filter: l.rp_filter.clone(),
            options: l.options.clone(),
            addresses: l
                .addresses
                .iter()
                .map(|a| Address {
                    net: a.net.value,
                    prefix_route: a.prefix_route.as_ref().is_none_or(|p| p.value),
                    span: a.net.span,
                })
                .collect(),
            span: l.span,
        });
        id
    }

    /// A link of namespace `ns` by name, or `undefined-reference`.
    fn link_ref(&mut self, ns: NetnsId, name: &Spanned<String>) -> Option<Spanned<LinkId>> {
        if let Some(l) = self.find_link(ns, &name.value) {
            return Some(Spanned::new(l.id, name.span));
        }
        if self.unbuilt.iter().any(|(n, l)| *n == ns && *l == name.value) {
            return None;
        }
        let elsewhere =
            self.node.links.iter().find(|l| l.name.value == name.value).map(|l| match &self.node.netns(l.netns).name {
                None => format!("the node's host namespace (`{}`)", ast::NetnsName::HOST),
                Some(n) => format!("namespace `{}`", n.value),
            });
        let candidates: Vec<String> = self.node.links_in(ns).map(|l| l.name.value.clone()).collect();
        self.diags.push(undefined("link", name, candidates.iter().map(|s| s.as_str()), elsewhere));
        None
    }

    /// The link's own kind and its references other than `master` (`dev`, `parent`).
    fn resolve_kind(&mut self, id: LinkId, ns: NetnsId, l: &ast::LinkDecl) {
        let kind = match &l.kind {
            ast::LinkKindDecl::Ethernet => Some(LinkKind::Ethernet),
            ast::LinkKindDecl::Bridge { netfilter, options } => {
                Some(LinkKind::Bridge { netfilter: netfilter.clone(), options: *options })
            }
            ast::LinkKindDecl::Veth { .. } | ast::LinkKindDecl::VethPeer => None,
            ast::LinkKindDecl::Vxlan { vni, local, remote, group, dev, port, options } => {
                let dev = dev.as_ref().and_then(|d| self.link_ref(ns, d));
                Some(LinkKind::Vxlan {
                    vni: vni.clone(),
                    local: local.clone(),
                    remote: remote.clone(),
                    group: group.clone(),
                    dev,
                    port: port.as_ref().map(|p| p.value).unwrap_or(4789),
                    options: *options,
                })
            }
            ast::LinkKindDecl::Macvlan { parent, mode } => self.link_ref(NetnsId::HOST, parent).map(|parent| {
                LinkKind::Macvlan { parent, mode: mode.as_ref().map(|m| m.value).unwrap_or(ast::MacvlanMode::Bridge) }
            }),
            ast::LinkKindDecl::Dummy => Some(LinkKind::Dummy),
            ast::LinkKindDecl::Vlan { parent, id: vid, protocol } => {
                self.parent_ref(ns, parent).map(|parent| LinkKind::Vlan {
                    parent,
                    id: vid.clone(),
                    protocol: protocol.as_ref().map(|p| p.value).unwrap_or(ast::VlanProtocol::Dot1q),
                })
            }
            ast::LinkKindDecl::Bond(b) => Some(LinkKind::Bond(Bond {
                mode: b.mode.as_ref().map(|m| m.value).unwrap_or(ast::BondMode::BalanceRr),
                miimon: b.miimon.as_ref().map(|m| m.value),
                lacp_rate: b.lacp_rate.as_ref().map(|m| m.value),
                xmit_hash_policy: b.xmit_hash_policy.as_ref().map(|m| m.value),
                // A port: resolved with the masters, once every link is known.
                primary: None,
                min_links: b.min_links.as_ref().map(|m| m.value),
            })),
            ast::LinkKindDecl::Vrf { table } => Some(LinkKind::Vrf { table: table.clone() }),
            ast::LinkKindDecl::Ipvlan { parent, mode } => self.parent_ref(ns, parent).map(|parent| LinkKind::Ipvlan {
                parent,
                mode: mode.as_ref().map(|m| m.value).unwrap_or(ast::IpvlanMode::L2),
            }),
            ast::LinkKindDecl::Wireguard(w) => Some(LinkKind::Wireguard(w.clone())),
            ast::LinkKindDecl::Tunnel(t) => {
                let dev = t.dev.as_ref().and_then(|d| self.link_ref(ns, d));
                if t.dev.is_some() && dev.is_none() {
                    None
                } else {
                    Some(LinkKind::Tunnel(Tunnel {
                        kind: t.kind,
                        local: t.local.clone(),
                        remote: t.remote.clone(),
                        ttl: t.ttl.as_ref().map(|v| v.value),
                        key: t.key.as_ref().map(|v| v.value),
                        dev,
                    }))
                }
            }
        };
        match kind {
            Some(kind) => self.node.links[id.0 as usize].kind = kind,
            None if !matches!(l.kind, ast::LinkKindDecl::Veth { .. } | ast::LinkKindDecl::VethPeer) => {
                self.unresolved.insert(id);
            }
            None => {}
        }
    }

    /// A stacked link's `parent`: a link of its own namespace, else of the node's host namespace
    /// (a VLAN or ipvlan of a host NIC, created there and moved into a `netns`).
    fn parent_ref(&mut self, ns: NetnsId, name: &Spanned<String>) -> Option<Spanned<LinkId>> {
        if ns != NetnsId::HOST && self.find_link(ns, &name.value).is_none() {
            if let Some(l) = self.find_link(NetnsId::HOST, &name.value) {
                return Some(Spanned::new(l.id, name.span));
            }
        }
        self.link_ref(ns, name)
    }

    /// `master` of the link and of a veth's peer (in the peer's namespace); every kind is known.
    fn resolve_masters(&mut self, id: LinkId, ns: NetnsId, l: &ast::LinkDecl) {
        self.resolve_master(id, ns, l);
        if let (ast::LinkKindDecl::Veth { peer, .. }, LinkKind::Veth { peer: pid }) =
            (&l.kind, &self.node.link(id).kind)
        {
            let (pid, pns) = (*pid, self.node.link(*pid).netns);
            self.resolve_master(pid, pns, peer);
        }
    }

    /// `vlans` belong on a VLAN-filtering bridge (its own) or on one of its ports.
    fn check_vlans(&mut self, id: LinkId, l: &ast::LinkDecl) {
        let Some(vlans) = &l.options.vlans else { return };
        let link = self.node.link(id);
        let name = link.name.value.clone();
        let bridge = match (&link.kind, link.master.as_ref().map(|m| m.value)) {
            (LinkKind::Bridge { .. }, _) => id,
            (_, Some(m)) => m,
            (_, None) if l.master.is_some() => return, // reported where `master` is
            (_, None) => {
                self.diags.push(
                    Diagnostic::error(
                        netcfg_lang::code::INVALID_VALUE,
                        vlans.span,
                        format!("`vlans` on `{name}`, which is not a bridge port"),
                    )
                    .with_help("make it a port with `master=\"BRIDGE\"`, naming a bridge with `vlan-filtering=#true`"),
                );
                return;
            }
        };
        let b = self.node.link(bridge);
        let (bname, bspan) = (b.name.value.clone(), b.name.span);
        match &b.kind {
            LinkKind::Bridge { options, .. } if options.vlan_filtering == Some(true) => {}
            LinkKind::Bridge { .. } => {
                let whose = if bridge == id { "its own".to_string() } else { format!("those of `{name}`") };
                self.diags.push(
                    Diagnostic::error(
                        netcfg_lang::code::INVALID_VALUE,
                        vlans.span,
                        format!("bridge `{bname}` does not filter by VLAN: `vlans` ({whose}) would have no effect"),
                    )
                    .with_secondary(bspan, "declared here")
                    .with_help(format!("add `vlan-filtering=#true` to bridge `{bname}`")),
                );
            }
            other => {
                let kind = other.keyword();
                self.diags.push(
                    Diagnostic::error(
                        netcfg_lang::code::INVALID_VALUE,
                        vlans.span,
                        format!("`vlans` on a port of `{bname}`, which is a {kind}, not a bridge"),
                    )
                    .with_secondary(bspan, "declared here")
                    .with_help("port VLANs exist only on bridge ports; on a bond, put the bond itself in the bridge"),
                );
            }
        }
    }

    fn resolve_master(&mut self, id: LinkId, ns: NetnsId, l: &ast::LinkDecl) {
        let Some(m) = &l.master else { return };
        let Some(master) = self.link_ref(ns, m) else { return };
        if self.unresolved.contains(&master.value) {
            return;
        }
        if !self.node.link(master.value).kind.is_master() {
            let kind = self.node.link(master.value).kind.keyword();
            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            self.diags.push(
                Diagnostic::error(
                    INVALID_REFERENCE,
                    m.span,
                    format!("`{}` is {article} {kind}, not a bridge, bond or vrf", m.value),
                )
                .with_secondary(self.node.link(master.value).name.span, "declared here")
                .with_help("`master` names a bridge, a bond or a vrf in the same namespace"),
            );
            return;
        }
        self.node.links[id.0 as usize].master = Some(master);
    }

    /// The table names of a namespace; a netns also sees the host namespace's (like
    /// `/etc/iproute2/rt_tables`, which every namespace of a machine shares).
    fn declare_tables(&mut self, ns: NetnsId, b: &NsBody) {
        let mut names: HashMap<String, (u32, Span)> = HashMap::new();
        for t in &b.tables {
            if let Some((_, first)) = names.get(&t.name.value) {
                self.diags.push(duplicate("table", &t.name, *first));
                continue;
            }
            names.insert(t.name.value.clone(), (t.id.value, t.name.span));
        }
        self.tables.insert(ns, names);
    }

    /// A table id from an id or a name visible in `ns`, or `undefined-reference`. The VRF's
    /// `table` resolves here too.
    pub(crate) fn table_ref(&mut self, ns: NetnsId, t: &Spanned<ast::TableRef>) -> Option<u32> {
        let name = match &t.value {
            ast::TableRef::Id(id) => return Some(*id),
            ast::TableRef::Name(n) => n,
        };
        if let Some((_, id)) = netcfg_lang::parse::RESERVED_TABLES.iter().find(|(r, _)| r == name) {
            return Some(*id);
        }
        let own = self.tables.get(&ns).and_then(|m| m.get(name));
        let host = self.tables.get(&NetnsId::HOST).and_then(|m| m.get(name));
        if let Some((id, _)) = own.or(host) {
            return Some(*id);
        }
        let mut candidates: Vec<&str> = netcfg_lang::parse::RESERVED_TABLES.iter().map(|(n, _)| *n).collect();
        for scope in [Some(ns), (ns != NetnsId::HOST).then_some(NetnsId::HOST)].into_iter().flatten() {
            candidates.extend(self.tables.get(&scope).into_iter().flat_map(|m| m.keys().map(|k| k.as_str())));
        }
        let d = undefined("table", &Spanned::new(name.clone(), t.span), candidates, None);
        let d = if d.help.as_deref().is_some_and(|h| h.starts_with("did you mean")) {
            d
        } else {
            d.with_help(format!("declare it in the namespace or the node: `table \"{name}\" id=100`"))
        };
        self.diags.push(d);
        None
    }

    /// A bond's `primary`: one of its ports.
    fn resolve_primary(&mut self, id: LinkId, ns: NetnsId, l: &ast::LinkDecl) {
        let ast::LinkKindDecl::Bond(b) = &l.kind else { return };
        let Some(p) = &b.primary else { return };
        let Some(port) = self.link_ref(ns, p) else { return };
        if self.node.link(port.value).master.as_ref().map(|m| m.value) != Some(id) {
            self.diags.push(
                Diagnostic::error(
                    INVALID_REFERENCE,
                    p.span,
                    format!("`{}` is not a port of bond `{}`", p.value, l.name.value),
                )
                .with_secondary(self.node.link(port.value).name.span, "declared here")
                .with_help(format!(
                    "add `master=\"{}\"` to `{}`, or name one of the bond's ports",
                    l.name.value, p.value
                )),
            );
            return;
        }
        if let LinkKind::Bond(bond) = &mut self.node.links[id.0 as usize].kind {
            bond.primary = Some(port);
        }
    }

    fn resolve_body(&mut self, ns: NetnsId, b: &NsBody) {
        let mut keys: foldhash::HashMap<(u32, IpNet, u32), Span> =
            foldhash::HashMap::with_capacity_and_hasher(b.routes.len(), Default::default());
        self.node.namespaces[ns.0 as usize].routes.reserve(b.routes.len());
        for r in &b.routes {
            let Some(route) = self.route(ns, r) else { continue };
            let metric = kernel_metric(&route.dst, route.metric);
            if let Some(first) = keys.get(&(route.table, route.dst, metric)) {
                self.diags.push(
                    Diagnostic::error(
                        CONFLICTING_ROUTES,
                        route.dst_span,
                        format!(
                            "a route to `{}` with metric {} in table {} is already declared",
                            route.dst, metric, route.table
                        ),
                    )
                    .with_secondary(*first, "first declared here")
                    .with_help("give one of the routes another `metric` or `table`, or remove it"),
                );
                continue;
            }
            keys.insert((route.table, route.dst, metric), route.dst_span);
            self.node.namespaces[ns.0 as usize].routes.push(route);
        }
        self.policy_rules(ns, b);
        for n in &b.neighbors {
            if let Some(dev) = self.link_ref(ns, &n.dev) {
                self.node.namespaces[ns.0 as usize].neighbors.push(Neighbor {
                    ip: n.ip.clone(),
                    mac: n.mac.clone(),
                    dev,
                    span: n.span,
                });
            }
        }
        self.sysctls(ns, b);
        self.firewall(ns, b);
        self.nat(ns, b);
        self.published_and_mapped(ns, b);
    }

    fn route(&mut self, ns: NetnsId, r: &ast::RouteDecl) -> Option<Route> {
        let dev = match &r.dev {
            Some(d) => Some(self.link_ref(ns, d)?),
            None => None,
        };
        let mut nexthops = Vec::new();
        let mut broken = false;
        for n in &r.nexthops {
            let dev = match &n.dev {
                Some(d) => match self.link_ref(ns, d) {
                    Some(d) => Some(d),
                    None => {
                        broken = true;
                        continue;
                    }
                },
                None => None,
            };
            nexthops.push(NextHop {
                via: n.via.clone(),
                dev,
                weight: n.weight.as_ref().map(|w| w.value).unwrap_or(1),
                onlink: n.onlink.as_ref().is_some_and(|o| o.value),
                span: n.span,
            });
        }
        let table = match &r.table {
            Some(t) => Some(self.table_ref(ns, t)?),
            None => None,
        };
        if broken {
            return None;
        }
        let dst = match r.dst.value {
            RouteDst::Net(n) => n,
            RouteDst::Default => {
                let v6 = r.via.as_ref().is_some_and(|v| v.value.is_ipv6())
                    || r.nexthops.iter().any(|n| n.via.as_ref().is_some_and(|v| v.value.is_ipv6()))
                    || r.src.as_ref().is_some_and(|s| s.value.is_ipv6());
                if v6 {
                    IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("valid")
                } else {
                    IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("valid")
                }
            }
        };
        let route_type = r.route_type.as_ref().map(|t| t.value).unwrap_or(RouteType::Unicast);
        let gatewayed = r.via.is_some() || r.nexthops.iter().any(|n| n.via.is_some());
        let scope = r.scope.as_ref().map(|s| s.value).unwrap_or(match route_type {
            // IPv6 has no route scopes: the kernel reports every IPv6 route as global.
            _ if dst.addr().is_ipv6() => RouteScope::Global,
            RouteType::Unicast if !gatewayed => RouteScope::Link,
            // What the kernel gives a local route (`ip route add local …`).
            RouteType::Local => RouteScope::Host,
            _ => RouteScope::Global,
        });
        // `ip route add local …` puts a local route in the `local` table unless told otherwise.
        let default_table = if route_type == RouteType::Local { LOCAL_TABLE } else { MAIN_TABLE };
        let m = &r.metrics;
        let metrics = RouteMetrics {
            mtu: m.mtu.as_ref().map(|v| v.value),
            advmss: m.advmss.as_ref().map(|v| v.value),
            initcwnd: m.initcwnd.as_ref().map(|v| v.value),
            initrwnd: m.initrwnd.as_ref().map(|v| v.value),
        };
        Some(Route {
            dst,
            dst_span: r.dst.span,
            via: r.via.clone(),
            dev,
            src: r.src.clone(),
            metric: r.metric.as_ref().map(|m| m.value).unwrap_or(0),
            table: table.unwrap_or(default_table),
            scope,
            onlink: r.onlink.as_ref().is_some_and(|o| o.value),
            route_type,
            metrics,
            nexthops,
            span: r.span,
        })
    }

    /// The namespace's policy rules: links and tables resolved, `goto` targets checked, and
    /// rules the kernel could not tell apart reported.
    fn policy_rules(&mut self, ns: NetnsId, b: &NsBody) {
        let mut rules: Vec<PolicyRule> = Vec::new();
        for r in &b.rules {
            let iif = r.iif.as_ref().map(|l| self.link_ref(ns, l));
            let oif = r.oif.as_ref().map(|l| self.link_ref(ns, l));
            let action = match &r.action.value {
                ast::RuleActionDecl::Lookup(t) => self.table_ref(ns, t).map(RuleAction::Lookup),
                ast::RuleActionDecl::L3mdev => Some(RuleAction::L3mdev),
                ast::RuleActionDecl::Goto(p) => Some(RuleAction::Goto(*p)),
                ast::RuleActionDecl::Blackhole => Some(RuleAction::Blackhole),
                ast::RuleActionDecl::Unreachable => Some(RuleAction::Unreachable),
                ast::RuleActionDecl::Prohibit => Some(RuleAction::Prohibit),
            };
            // An unresolved link or table is reported; the rule is left out.
            let (Some(action), Some(iif), Some(oif)) = (action, resolved(iif), resolved(oif)) else { continue };
            rules.push(PolicyRule {
                priority: r.priority.clone(),
                family: r.family.as_ref().map(|f| f.value),
                from: r.from.clone(),
                to: r.to.clone(),
                iif,
                oif,
                fwmark: r.fwmark.as_ref().map(|m| (m.value.value, m.value.mask_or_all())),
                ipproto: r.ipproto.as_ref().map(|p| p.value),
                sport: r.sport.as_ref().map(|p| p.value),
                dport: r.dport.as_ref().map(|p| p.value),
                suppress_prefixlength: r.suppress_prefixlength.as_ref().map(|s| s.value),
                action: Spanned::new(action, r.action.span),
                span: r.span,
            });
        }
        let mut kept: Vec<PolicyRule> = Vec::new();
        for r in rules {
            let same = kept.iter().find(|k| {
                let fams_meet = k.families().iter().any(|f| r.families().contains(f));
                fams_meet
                    && k.priority.value == r.priority.value
                    && k.from.as_ref().map(|n| n.value) == r.from.as_ref().map(|n| n.value)
                    && k.to.as_ref().map(|n| n.value) == r.to.as_ref().map(|n| n.value)
                    && k.iif.as_ref().map(|l| l.value) == r.iif.as_ref().map(|l| l.value)
                    && k.oif.as_ref().map(|l| l.value) == r.oif.as_ref().map(|l| l.value)
                    && k.fwmark == r.fwmark
                    && k.ipproto == r.ipproto
                    && k.sport == r.sport
                    && k.dport == r.dport
                    && k.suppress_prefixlength == r.suppress_prefixlength
                    && k.action.value == r.action.value
            });
            if let Some(first) = same {
                self.diags.push(
                    Diagnostic::error(
                        DUPLICATE_RULE,
                        r.priority.span,
                        format!(
                            "a rule with priority {} and the same matches and action is already declared",
                            r.priority.value
                        ),
                    )
                    .with_secondary(first.span, "first declared here")
                    .with_help("remove one of them (the kernel keeps one copy of a rule)"),
                );
                continue;
            }
            kept.push(r);
        }
        for r in &kept {
            if let RuleAction::Goto(target) = r.action.value {
                // The kernel keeps one rule list per family: the target must be in the rule's.
                let found = kept
                    .iter()
                    .any(|k| k.priority.value == target && k.families().iter().any(|f| r.families().contains(f)));
                if !found {
                    self.diags.push(
                        Diagnostic::error(
                            UNDEFINED_REFERENCE,
                            r.action.span,
                            format!("no rule with priority {target} to go to"),
                        )
                        .with_label("not declared")
                        .with_help("`goto` names the priority of a later `rule` of this namespace and family"),
                    );
                }
            }
        }
        self.node.namespaces[ns.0 as usize].rules = kept;
    }

    /// Explicit sysctls plus the first-class ones; two different values for one path conflict.
    fn sysctls(&mut self, ns: NetnsId, b: &NsBody) {
        use ast::Family::{Ipv4, Ipv6};
        use netcfg_lang::value::ConfScope;
        let mut set: Vec<(SysctlPath, SysctlValue, Span)> = Vec::new();
        for f in &b.forwarding {
            if let Some(v4) = &f.ipv4 {
                set.push((SysctlPath::forwarding(Ipv4), SysctlValue::Int(v4.value.into()), v4.span));
            }
            if let Some(v6) = &f.ipv6 {
                set.push((SysctlPath::forwarding(Ipv6), SysctlValue::Int(v6.value.into()), v6.span));
            }
        }
        if let Some(rp) = &b.rp_filter {
            let value = SysctlValue::Int(rp.value.sysctl_value().into());
            set.push((SysctlPath::rp_filter(ConfScope::All), value, rp.span));
        }
        if let Some(bn) = &b.bridge_netfilter {
            for fam in [Ipv4, Ipv6] {
                set.push((SysctlPath::bridge_nf_call(fam), SysctlValue::Int(bn.value.into()), bn.span));
            }
        }
        let links: Vec<(String, Spanned<ast::RpFilter>)> =
            self.node.links_in(ns).filter_map(|l| l.rp_filter.clone().map(|rp| (l.name.value.clone(), rp))).collect();
        for (name, rp) in links {
            let value = SysctlValue::Int(rp.value.sysctl_value().into());
            set.push((SysctlPath::rp_filter(ConfScope::Link(&name)), value, rp.span));
        }
        for s in &b.sysctls {
            set.push((s.path.value.clone(), s.value.value.clone(), s.span));
        }
        let map = &mut self.node.namespaces[ns.0 as usize].sysctls;
        for (path, value, span) in set {
            match map.get(&path) {
                Some(prev) if prev.value != value => self.diags.push(
                    Diagnostic::error(
                        CONFLICTING_SYSCTL,
                        span,
                        format!("`{path}` is set to {value} here and to {} before", prev.value),
                    )
                    .with_secondary(prev.span, "set here first")
                    .with_help("keep one value"),
                ),
                Some(_) => {}
                None => {
                    map.insert(path, Sysctl { value, span });
                }
            }
        }
    }

    fn addr_match(&mut self, sets: &[AddrSet], m: &Spanned<ast::AddrMatch>) -> Option<Spanned<AddrMatch>> {
        match &m.value {
            ast::AddrMatch::Net(n) => Some(Spanned::new(AddrMatch::Net(*n), m.span)),
            ast::AddrMatch::Set(name) => match sets.iter().find(|s| &s.name.value == name) {
                Some(s) => Some(Spanned::new(AddrMatch::Set(s.id), m.span)),
                None => {
                    let names: Vec<&str> = sets.iter().map(|s| s.name.value.as_str()).collect();
                    self.diags.push(undefined("address set", &Spanned::new(name.clone(), m.span), names, None));
                    None
                }
            },
        }
    }

    fn firewall(&mut self, ns: NetnsId, b: &NsBody) {
        let mut fw = Firewall { stateful: true, ..Firewall::default() };
        for decl in &b.firewalls {
            fw.span.get_or_insert(decl.span);
            for (slot, new, dir) in [
                (&mut fw.policy_in, &decl.policy_in, "in"),
                (&mut fw.policy_out, &decl.policy_out, "out"),
                (&mut fw.policy_forward, &decl.policy_forward, "forward"),
            ] {
                if let Some(new) = new {
                    if let Some(old) = slot.as_ref() {
                        self.diags.push(
                            Diagnostic::error(
                                netcfg_lang::code::DUPLICATE_PROPERTY,
                                new.span,
                                format!("the `{dir}` policy is set twice"),
                            )
                            .with_secondary(old.span, "first set here")
                            .with_help("keep one `policy` per direction"),
                        );
                    } else {
                        *slot = Some(new.clone());
                    }
                }
            }
            if let Some(s) = &decl.stateful {
                fw.stateful = s.value;
            }
            for z in &decl.zones {
                if let Some(first) = fw.zones.iter().find(|f| f.name.value == z.name.value) {
                    self.diags.push(duplicate("zone", &z.name, first.name.span));
                    continue;
                }
                let mut links: Vec<Spanned<LinkId>> = z.links.iter().filter_map(|l| self.link_ref(ns, l)).collect();
                // Declared links a pattern matches are members the checks know by id.
                for l in self.node.links_in(ns) {
                    if let Some(p) = z.patterns.iter().find(|p| l.name.value.starts_with(p.value.as_str())) {
                        if !links.iter().any(|x| x.value == l.id) {
                            links.push(Spanned::new(l.id, p.span));
                        }
                    }
                }
                let patterns = z.patterns.clone();
                fw.zones.push(Zone {
                    id: ZoneId(fw.zones.len() as u32),
                    name: z.name.clone(),
                    links,
                    patterns,
                    span: z.span,
                });
            }
            for s in &decl.sets {
                if let Some(first) = fw.sets.iter().find(|f| f.name.value == s.name.value) {
                    self.diags.push(duplicate("address set", &s.name, first.name.span));
                    continue;
                }
                fw.sets.push(AddrSet {
                    id: SetId(fw.sets.len() as u32),
                    name: s.name.clone(),
                    elements: s.elements.clone(),
                    dynamic: s.dynamic.as_ref().map(|d| DynamicSet {
                        timeout: d.timeout.as_ref().map(|t| t.value),
                        size: d.size.as_ref().map_or(DynamicSet::DEFAULT_SIZE, |s| s.value),
                        family: d.family.as_ref().map(|f| f.value),
                    }),
                    span: s.span,
                });
            }
        }
        let groups = self.groups;
        for decl in &b.firewalls {
            let expanded = groups.expand(decl, self.diags);
            // Sized up front: doubling left up to half of 100,000 rules' room unused.
            fw.rules.reserve_exact(expanded.len());
            for e in expanded {
                // Findings on a rule of a group name the `use-rules` it came through.
                let before = self.diags.len();
                let mut rule = self.rule(ns, &fw, e.rule);
                if !e.via.is_empty() {
                    rule.more.via = e.via;
                }
                for d in &mut self.diags[before..] {
                    rule.label_use_sites(d);
                }
                fw.rules.push(rule);
            }
            for r in &decl.marks {
                let matches = self.rule(ns, &fw, r);
                fw.marks.push(MarkRule { matches, set_mark: r.set_mark.clone(), set_ct_mark: r.set_ct_mark.clone() });
            }
            for r in &decl.notracks {
                let rule = self.rule(ns, &fw, r);
                fw.notracks.push(rule);
            }
            for c in &decl.clamp_mss {
                let out = c.out.as_ref().and_then(|o| self.link_ref(ns, o));
                if c.out.is_none() || out.is_some() {
                    fw.clamp_mss.push(ClampMss { out, size: c.size.as_ref().map(|s| s.value), span: c.span });
                }
            }
        }
        self.node.namespaces[ns.0 as usize].firewall = fw;
    }

    /// One firewall rule's matches and statements, references resolved against `fw`.
    fn rule(&mut self, ns: NetnsId, fw: &Firewall, r: &ast::RuleDecl) -> Rule {
        let from = r.from.as_ref().and_then(|m| self.addr_match(&fw.sets, m));
        let to = r.to.as_ref().and_then(|m| self.addr_match(&fw.sets, m));
        // Most rules set none of the rare matches: nothing to resolve, nothing to compare.
        let more = if r.more.is_empty() { Rare::default() } else { Rare::new(self.rule_more(ns, fw, r)) };
        Rule {
            verdict: r.verdict.clone(),
            direction: r.direction.clone(),
            proto: r.proto.clone(),
            dport: r.dport.clone(),
            sport: r.sport.clone(),
            from,
            to,
            span: r.span,
            more,
        }
    }

    /// The rare matches and statements of a rule ([`ast::RuleDeclMore`]), resolved.
    fn rule_more(&mut self, ns: NetnsId, fw: &Firewall, r: &ast::RuleDecl) -> RuleMore {
        let iif = r.iif.as_ref().and_then(|l| self.link_ref(ns, l));
        let oif = r.oif.as_ref().and_then(|l| self.link_ref(ns, l));
        let zone = |z: &Option<Spanned<String>>, diags: &mut Vec<Diagnostic>| {
            let z = z.as_ref()?;
            match fw.zones.iter().find(|f| f.name.value == z.value) {
                Some(f) => Some(Spanned::new(f.id, z.span)),
                None => {
                    let names: Vec<&str> = fw.zones.iter().map(|f| f.name.value.as_str()).collect();
                    diags.push(undefined("zone", z, names, None));
                    None
                }
            }
        };
        let from_zone = zone(&r.from_zone, self.diags);
        let to_zone = zone(&r.to_zone, self.diags);
        let add_to = r
            .add_to
            .as_ref()
            .and_then(|name| self.dynamic_set_ref(&fw.sets, name))
            .map(|set| (set, r.add_to_key.as_ref().map(|k| k.value).unwrap_or_default()));
        let e = &r.except;
        let except = Except {
            from: e.from.as_ref().and_then(|m| self.addr_match(&fw.sets, m)),
            to: e.to.as_ref().and_then(|m| self.addr_match(&fw.sets, m)),
            dport: e.dport.clone(),
            sport: e.sport.clone(),
            iif: e.iif.as_ref().and_then(|l| self.link_ref(ns, l)),
            oif: e.oif.as_ref().and_then(|l| self.link_ref(ns, l)),
            from_zone: zone(&e.from_zone, self.diags),
            to_zone: zone(&e.to_zone, self.diags),
            mark: e.mark.clone(),
            ct_mark: e.ct_mark.clone(),
            uid: e.uid.clone(),
            gid: e.gid.clone(),
        };
        let logs = r.log.as_ref().map_or(r.log_prefix.is_some() || r.log_level.is_some(), |l| l.value);
        let log = logs.then(|| Log {
            prefix: r.log_prefix.as_ref().map(|p| p.value.clone()),
            level: r.log_level.as_ref().map(|l| l.value),
        });
        RuleMore {
            iif,
            oif,
            from_zone,
            to_zone,
            via: Vec::new(),
            state: r.state.iter().map(|s| s.value).collect(),
            family: r.family.clone(),
            icmp_types: r.icmp_types.clone(),
            icmp_code: r.icmp_code.clone(),
            except: Rare::new(except),
            limit: r.limit.clone(),
            burst: r.burst.as_ref().map(|b| b.value),
            conn_limit: r.conn_limit.clone(),
            log,
            counter: r.counter.clone(),
            mark: r.mark.clone(),
            ct_mark: r.ct_mark.clone(),
            uid: r.uid.clone(),
            gid: r.gid.clone(),
            pkttype: r.pkttype.clone(),
            add_to,
            comment: r.comment.as_ref().map(|c| c.value.clone()),
        }
    }

    /// The set an `add-to` names: it must be a dynamic set of this firewall.
    fn dynamic_set_ref(&mut self, sets: &[AddrSet], name: &Spanned<String>) -> Option<Spanned<SetId>> {
        let Some(set) = sets.iter().find(|s| s.name.value == name.value) else {
            let names: Vec<&str> = sets.iter().filter(|s| s.dynamic.is_some()).map(|s| s.name.value.as_str()).collect();
            self.diags.push(undefined("dynamic set", name, names, None));
            return None;
        };
        if set.dynamic.is_none() {
            self.diags.push(
                Diagnostic::error(INVALID_REFERENCE, name.span, format!("set `{}` is not dynamic", name.value))
                    .with_label("rules cannot add to it")
                    .with_secondary(set.name.span, "declared here without `dynamic=#true`")
                    .with_help(format!("declare `set \"{}\" dynamic=#true`, or add to another set", name.value)),
            );
            return None;
        }
        Some(Spanned::new(set.id, name.span))
    }

    /// A `from` of `masquerade`/`snat`: a dynamic set is refused (what is translated must not
    /// change with traffic, and checks reason about its addresses).
    fn nat_from(&mut self, sets: &[AddrSet], m: &Spanned<ast::AddrMatch>) -> Option<Spanned<AddrMatch>> {
        let resolved = self.addr_match(sets, m)?;
        if let AddrMatch::Set(id) = &resolved.value {
            let set = &sets[id.0 as usize];
            if set.dynamic.is_some() {
                self.diags.push(
                    Diagnostic::error(INVALID_REFERENCE, m.span, format!("set `{}` is dynamic", set.name.value))
                        .with_label("rules fill it at run time")
                        .with_secondary(set.name.span, "declared here")
                        .with_help("translate a static set or network: masquerade and snat select fixed sources"),
                );
                return None;
            }
        }
        Some(resolved)
    }

    fn nat(&mut self, ns: NetnsId, b: &NsBody) {
        let sets = self.node.netns(ns).firewall.sets.clone();
        let mut services: Vec<Service> = Vec::new();
        let mut service_names: HashMap<&str, Span> = HashMap::new();
        for s in &b.services {
            if let Some(first) = service_names.get(s.name.value.as_str()) {
                self.diags.push(duplicate("service", &s.name, *first));
                continue;
            }
            service_names.insert(&s.name.value, s.name.span);
            services.push(Service {
                name: s.name.clone(),
                vip: s.vip.clone(),
                port: s.port.clone(),
                proto: s.proto.as_ref().map(|p| p.value).unwrap_or(ast::Proto::Tcp),
                backends: s
                    .backends
                    .iter()
                    .map(|b| Backend {
                        addr: b.addr.value,
                        port: b.port.value,
                        weight: b.weight.as_ref().map(|w| w.value).unwrap_or(1),
                        span: b.addr.span,
                    })
                    .collect(),
                span: s.span,
            });
            if let Some(bad) = s.backends.iter().find(|b| b.addr.value.is_ipv4() != s.vip.value.is_ipv4()) {
                self.diags.push(
                    Diagnostic::error(
                        netcfg_lang::code::INVALID_VALUE,
                        bad.addr.span,
                        "the backend and the service VIP are of different IP families",
                    )
                    .with_secondary(s.vip.span, "the VIP")
                    .with_help("netcfg does not translate between IPv4 and IPv6; declare one service per family"),
                );
            }
        }
        let mut masquerades = Vec::new();
        for m in &b.masquerades {
            let from = m.from.as_ref().and_then(|f| self.nat_from(&sets, f));
            let out = m.out.as_ref().and_then(|o| self.link_ref(ns, o));
            masquerades.push(Masquerade { from, out, span: m.span });
        }
        let mut snats = Vec::new();
        for s in &b.snats {
            let from = s.from.as_ref().and_then(|f| self.nat_from(&sets, f));
            let out = s.out.as_ref().and_then(|o| self.link_ref(ns, o));
            snats.push(Snat {
                from,
                out,
                to: s.to.clone(),
                to_last: s.to_last,
                ports: s.ports.as_ref().map(|p| p.value),
                span: s.span,
            });
        }
        let redirects = b
            .redirects
            .iter()
            .map(|r| Redirect {
                direction: r.direction.value,
                proto: r.proto.as_ref().map(|p| p.value).unwrap_or(ast::Proto::Tcp),
                ports: r.ports.as_ref().map(|p| p.value.clone()),
                except_ports: r.except_ports.as_ref().map(|p| p.value.clone()),
                except_uid: r.except_uid.as_ref().map(|u| u.value),
                to_port: r.to_port.clone(),
                span: r.span,
            })
            .collect();
        let mut listeners: Vec<Listener> = Vec::new();
        let mut listener_names: HashMap<&str, Span> = HashMap::new();
        for l in &b.listeners {
            if let Some(first) = listener_names.get(l.name.value.as_str()) {
                self.diags.push(duplicate("listener", &l.name, *first));
                continue;
            }
            listener_names.insert(&l.name.value, l.name.span);
            listeners.push(Listener {
                name: l.name.clone(),
                address: l.address.clone(),
                port: l.port.clone(),
                proto: l.proto.as_ref().map(|p| p.value).unwrap_or(ast::Proto::Tcp),
                span: l.span,
            });
        }
        let n = &mut self.node.namespaces[ns.0 as usize];
        n.services = services;
        n.masquerades = masquerades;
        n.snats = snats;
        n.redirects = redirects;
        n.listeners = listeners;
    }
}

mod nat;

#[cfg(test)]
mod dynamic_set_tests {
    use crate::fixture::check;

    #[test]
    fn dynamic_set_mistakes_are_one_diagnostic_each() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; }
    firewall {
        set "admins" "192.0.2.0/28"
        set "banned" dynamic=#true timeout="1h"
        set "late" timeout="1h"
//                          ^^ error missing-property
        set "seeded" dynamic=#true family="ipv4" {
            element "10.0.0.0/8"
//                   ^^^^^^^^^^ error invalid-value
            element "2001:db8::1"
//                   ^^^^^^^^^^^ error invalid-value
        }
        set "short" dynamic=#true timeout="1w"
//                                          ^ error invalid-value
        deny in proto="tcp" port=23 add-to="@admins"
//                                          ^^^^^^^ error invalid-reference
        deny in proto="tcp" port=24 add-to="@baned"
//                                          ^^^^^^ error undefined-reference
        deny in proto="tcp" port=25 add-to="banned"
//                                          ^^^^^^ error invalid-value
        deny in proto="tcp" port=27 add-to-key="dst"
//                                              ^^^ error missing-property
        deny in proto="tcp" port=28 add-to="@banned" add-to-key="destination"
//                                                               ^^^^^^^^^^^ error invalid-value
        mark in proto="tcp" port=26 set-mark="0x1" add-to="@banned"
//                                                 ^^^^^^ error unknown-property
    }
    masquerade from="@banned" out="eth0"
//                   ^^^^^^^ error invalid-reference
}
"#,
        );
    }

    #[test]
    fn a_dynamic_set_match_never_covers_a_later_rule_and_keeps_both_families() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; address "2001:db8::10/64"; }
    firewall {
        policy in="drop"
        set "banned" dynamic=#true timeout="1h" { element "198.51.100.7"; }
        set "v6only" dynamic=#true family="ipv6"
        deny in from="@banned"
        deny in from="198.51.100.7"
        deny in proto="tcp" port=23 add-to="@banned"
        deny in proto="tcp" port=23
        allow in proto="tcp" port=22 from="@v6only"
        allow in proto="icmp" from="@v6only"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule
    }
}
"#,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;
    use netcfg_lang::parse_str;

    fn fleet(src: &str) -> crate::ir::Fleet {
        let parsed = parse_str("t.kdl", src);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        crate::compile(&parsed.spec).fleet
    }

    #[test]
    fn templates_expand_and_the_node_overrides_by_name() {
        let f = fleet(
            r#"
template "base" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.1/24"; }
    bridge "cni0" netfilter=#true
}
template "worker" {
    use "base"
    sysctl "net.ipv4.tcp_syncookies" 1
}
node "w1" {
    use "worker"
    ethernet "eth0" { address "10.0.0.11/24"; }
}
node "w2" { use "worker"; }
"#,
        );
        let w1 = &f.nodes[0];
        let eth0 = w1.find_link(crate::ir::NetnsId::HOST, "eth0").unwrap();
        assert_eq!(eth0.addresses[0].net.to_string(), "10.0.0.11/24");
        assert!(w1.find_link(crate::ir::NetnsId::HOST, "cni0").is_some());
        assert_eq!(
            w1.netns(crate::ir::NetnsId::HOST)
                .sysctl_int(&netcfg_lang::value::SysctlPath::forwarding(netcfg_lang::vocab::Family::Ipv4)),
            Some(1)
        );
        assert_eq!(
            w1.netns(crate::ir::NetnsId::HOST)
                .sysctl_int(&netcfg_lang::value::SysctlPath("net.ipv4.tcp_syncookies".into())),
            Some(1)
        );
        let w2 = &f.nodes[1];
        assert_eq!(w2.find_link(crate::ir::NetnsId::HOST, "eth0").unwrap().addresses[0].net.to_string(), "10.0.0.1/24");
        // Every namespace has its loopback.
        assert!(w2.find_link(crate::ir::NetnsId::HOST, "lo").is_some());
    }

    #[test]
    fn template_parameters_fill_values_with_their_types() {
        let f = fleet(
            r#"
template "worker" {
    param "node-ip"
    param "pod-cidr"
    param "uplink" default="eth0"
    param "mtu" default=1500
    forwarding #true
    ethernet "${uplink}" mtu="${mtu}" { address "${node-ip}/24"; }
    bridge "cni0" { address "${pod-cidr}"; }
    route "default" via="10.0.0.1" comment="cost $$5, literal $${x}"
}
template "vlan" {
    param "id"
    vlan "eth0.${id}" parent="eth0" id="${id}"
}
node "w1" {
    use "worker" node-ip="10.0.0.11" pod-cidr="10.244.1.1/24" mtu=9000
    use "vlan" id=10
    use "vlan" id=20
}
node "w2" { use "worker" node-ip="10.0.0.12" pod-cidr="10.244.2.1/24" uplink="ens3"; }
"#,
        );
        let host = crate::ir::NetnsId::HOST;
        let w1 = &f.nodes[0];
        let eth0 = w1.find_link(host, "eth0").unwrap();
        assert_eq!(eth0.addresses[0].net.to_string(), "10.0.0.11/24");
        assert_eq!(eth0.mtu.as_ref().map(|m| m.value), Some(9000));
        assert_eq!(w1.find_link(host, "cni0").unwrap().addresses[0].net.to_string(), "10.244.1.1/24");
        assert!(w1.find_link(host, "eth0.10").is_some() && w1.find_link(host, "eth0.20").is_some());
        let w2 = &f.nodes[1];
        let ens3 = w2.find_link(host, "ens3").unwrap();
        assert_eq!(ens3.addresses[0].net.to_string(), "10.0.0.12/24");
        assert_eq!(ens3.mtu.as_ref().map(|m| m.value), Some(1500));
        assert!(w2.find_link(host, "eth0").is_none());
    }

    #[test]
    fn a_bad_parameter_value_is_shown_where_it_is_given_and_where_the_template_uses_it() {
        let d = check(
            r#"
template "w" {
    param "ip"
    param "mtu"
    ethernet "eth0" mtu="${mtu}" { address "${ip}/24"; }
//                                         ^^^^^^^^^^ error invalid-value
}
node "a" { use "w" ip="10.0.0.300" mtu=70000; }
//                                     ^^^^^ error invalid-value
"#,
        );
        let labels = |i: usize| d[i].secondary.iter().map(|l| l.message.clone()).collect::<Vec<_>>();
        let spliced = d.iter().position(|x| x.message.contains("10.0.0.300")).unwrap();
        assert_eq!(labels(spliced), ["`ip` = `10.0.0.300` (given here)"]);
        let whole = d.iter().position(|x| x.message.contains("70000")).unwrap();
        assert_eq!(labels(whole), ["`mtu` is used here, in the template"]);
    }

    #[test]
    fn template_parameter_errors() {
        check(
            r#"
template "w" {
    param "ip"
    param "ip"
//         ^^ error duplicate-name
    param "unused" default=1
    ethernet "eth0" { address "${ip}/24"; }
//                            ^^^^^^^^^^ error invalid-value
    ethernet "eth1" { address "${ipp}/24"; }
//                             ^^^^^^ error undefined-reference
    ethernet "eth2" mtu="${ip}"
}
template "plain" { forwarding #true; }
node "a" {
    use "w" ip="10.0.0.1" colour="red"
//                        ^^^^^^ error unknown-property
}
node "b" {
    use "w"
//  ^^^^^^^ error missing-property
}
node "c" {
    use "w" ip="10.0.0.999"
//              ^^^^^^^^^^ error invalid-value
    use "plain" x=1
//              ^ error unknown-property
}
node "d" {
    use "w" "plain" ip="10.0.0.1"
//                  ^^ error invalid-value
}
"#,
        );
    }

    #[test]
    fn template_errors() {
        check(
            r#"
template "a" { use "b"; }
template "b" { use "a"; }
//                  ^ error template-cycle
node "n" {
    use "a"
    use "wroker"
//       ^^^^^^ error undefined-reference
}
"#,
        );
    }

    #[test]
    fn port_vlans_belong_on_a_vlan_filtering_bridge() {
        let d = check(
            r#"
node "n" {
    bridge "br0" vlan-filtering=#true vlans="10" pvid=10 untagged="10"
    ethernet "eth1" master="br0" vlans="10,20-30" pvid=10 untagged="10"
    ethernet "eth2" master="br0" vlans="20" pvid=10
//                                               ^^ error invalid-value
    ethernet "eth3" master="br0" vlans="5" untagged="5-6"
//                                                   ^^^ error invalid-value
    ethernet "eth4" master="br0" vlans="1,4095"
//                                        ^^^^ error invalid-value
    ethernet "eth5" master="br0" pvid=3
//                                    ^ error invalid-value
    bridge "br1" vlans="7"
//                      ^ error invalid-value
    ethernet "eth6" master="br1" vlans="7"
//                                      ^ error invalid-value
    ethernet "eth7" vlans="7"
//                         ^ error invalid-value
    bond "bond0"
    ethernet "eth8" master="bond0" vlans="7"
//                                        ^ error invalid-value
    netns "t" {
        veth "v0" { peer "v0-host" netns="@host" master="br0" vlans="30" pvid=30 untagged="30"; }
    }
}
"#,
        );
        let plain = d.iter().find(|d| d.message.contains("those of `eth6`")).unwrap();
        assert_eq!(plain.help.as_deref(), Some("add `vlan-filtering=#true` to bridge `br1`"));
        assert_eq!(plain.secondary[0].message, "declared here");
        assert!(d.iter().any(|d| d.message.contains("`br1` does not filter by VLAN: `vlans` (its own)")));
    }

    #[test]
    fn undefined_and_duplicate_names() {
        let d = check(
            r#"
node "n" {
    bridge "ecs-bridge"
    bridge "ecs-bridge"
//          ^^^^^^^^^^ error duplicate-name
    ethernet "lo"
//            ^^ error duplicate-name
    netns "t" {
        veth "eth0" { peer "veth-t" netns="@host" master="ecs-brdge"; }
//                                                        ^^^^^^^^^ error undefined-reference
        route "default" via="10.0.0.1" dev="ecs-bridge"
//                                          ^^^^^^^^^^ error undefined-reference
        veth "eth1" { peer "veth-u" netns="tsk"; }
//                                         ^^^ error undefined-reference
    }
}
node "n"
//    ^ error duplicate-name
"#,
        );
        let typo = d.iter().find(|d| d.message.contains("ecs-brdge")).unwrap();
        assert_eq!(typo.help.as_deref(), Some("did you mean `ecs-bridge`?"));
        let elsewhere = d.iter().find(|d| d.message.contains("no link named `ecs-bridge`")).unwrap();
        assert!(elsewhere.help.as_deref().unwrap().contains("host namespace"), "{:?}", elsewhere.help);
        let dup = d.iter().find(|d| d.code == "duplicate-name" && d.message.contains("ecs-bridge")).unwrap();
        assert_eq!(dup.secondary[0].message, "first declared here");
    }

    #[test]
    fn a_nic_is_declared_in_one_namespace_only() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    ethernet "eth1"
    netns "t" {
        ethernet "eth0"
//                ^^^^ error duplicate-name
        veth "eth1" { peer "veth-t" netns="@host"; }
    }
}
node "m" {
    ethernet "eth0"
}
"#,
        );
        assert_eq!(d[0].message, "NIC `eth0` is declared in namespace `t` and in `@host`");
        assert_eq!(d[0].secondary[0].message, "first declared here, in `@host`");
    }

    #[test]
    fn first_class_sysctls_conflicting_with_explicit_ones() {
        check(
            r#"
node "n" {
    forwarding #true
    sysctl "net.ipv4.ip_forward" 0
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error conflicting-sysctl
    rp-filter "strict"
    sysctl "net.ipv4.conf.all.rp_filter" 1
}
"#,
        );
    }

    #[test]
    fn two_routes_with_one_kernel_key_conflict() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "10.50.0.0/16" via="10.0.0.1" dev="eth0"
    route "10.50.0.0/16" via="10.0.0.3" dev="eth0"
//         ^^^^^^^^^^^^ error conflicting-routes
    route "10.50.0.0/16" via="10.0.0.3" dev="eth0" metric=100
}
"#,
        );
    }

    #[test]
    fn references_do_not_depend_on_declaration_order() {
        let f = fleet(
            r#"
node "n" {
    ethernet "enp3s0" master="br0"
    veth "v0" master="br0" { peer "v1" master="br0"; }
    macvlan "mv0" parent="enp4s0" master="br0"
    netns "pod" {
        veth "eth0" { peer "veth-pod" netns="@host" master="cni0"; }
    }
    bridge "br0"
    bridge "cni0"
    ethernet "enp4s0"
}
"#,
        );
        let n = &f.nodes[0];
        let host = crate::ir::NetnsId::HOST;
        let br0 = n.find_link(host, "br0").unwrap().id;
        for port in ["enp3s0", "v0", "v1", "mv0"] {
            assert_eq!(n.find_link(host, port).unwrap().master.as_ref().map(|m| m.value), Some(br0), "{port}");
        }
        let cni0 = n.find_link(host, "cni0").unwrap().id;
        assert_eq!(n.find_link(host, "veth-pod").unwrap().master.as_ref().map(|m| m.value), Some(cni0));
        let parent = n.find_link(host, "enp4s0").unwrap().id;
        assert!(matches!(&n.find_link(host, "mv0").unwrap().kind,
            crate::ir::LinkKind::Macvlan { parent: p, .. } if p.value == parent));
        // And with checks: no finding at all.
        check(
            r#"
node "n" {
    ethernet "enp3s0" master="br0"
    veth "v0" master="br0" { peer "v1"; }
    bridge "br0" { address "192.168.1.1/24"; }
}
"#,
        );
    }

    #[test]
    fn master_must_be_a_bridge() {
        check(
            r#"
node "n" {
    ethernet "eth0"
    veth "v0" master="eth0" { peer "v1"; }
//                    ^^^^ error invalid-reference
}
"#,
        );
    }

    #[test]
    fn named_tables_and_policy_rules_resolve() {
        let f = fleet(
            r#"
node "n" {
    table "isp-b" id=200
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "default" via="10.0.0.1" dev="eth0" table="isp-b" mtu=1400
    route "192.0.2.1" type="local" dev="lo"
    rule priority=100 from="10.0.0.0/24" table="isp-b"
    rule priority=110 fwmark="0x10/0xff" table="main"
    rule priority=120 goto=130
    rule priority=130 iif="eth0" action="prohibit"
    netns "x" {
        veth "eth0" { peer "vx" netns="@host"; }
        rule priority=10 to="10.1.0.0/16" table="isp-b"
    }
}
"#,
        );
        let n = &f.nodes[0];
        let host = n.netns(crate::ir::NetnsId::HOST);
        assert_eq!(host.routes[0].table, 200);
        assert_eq!(host.routes[0].metrics.mtu, Some(1400));
        assert_eq!(host.routes[1].table, crate::ir::LOCAL_TABLE, "a local route goes to table local");
        assert_eq!(host.rules[0].action.value, crate::ir::RuleAction::Lookup(200));
        assert_eq!(host.rules[0].family, Some(netcfg_lang::vocab::Family::Ipv4));
        assert_eq!(host.rules[1].fwmark, Some((0x10, 0xff)));
        assert_eq!(host.rules[1].family, None, "no address: both families");
        assert_eq!(
            n.namespaces[1].rules[0].action.value,
            crate::ir::RuleAction::Lookup(200),
            "host names reach a netns"
        );
    }

    #[test]
    fn policy_rule_and_table_mistakes() {
        check(
            r#"
node "n" {
    table "isp-b" id=200
    table "isp-b" id=201
//         ^^^^^ error duplicate-name
    table "main" id=300
//         ^^^^ error invalid-value
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "default" via="10.0.0.1" dev="eth0" table="isp-c"
//                                                   ^^^^^ error undefined-reference
    rule priority=100 iif="eth9" table="isp-b"
//                         ^^^^ error undefined-reference
    rule priority=110 from="10.0.0.0/24" table=200
    rule priority=110 from="10.0.0.0/24" table="isp-b"
//                ^^^ error duplicate-rule
    rule priority=120 goto=125
    rule priority=125 family="ipv6" action="prohibit"
    rule priority=122 family="ipv4" goto=125
//                                       ^^^ error undefined-reference
    rule priority=130 from="10.0.0.0/24" to="fd00::/64" table=200
//                                           ^^^^^^^^^ error invalid-value
    rule priority=140 table=200 action="prohibit"
//                                      ^^^^^^^^ error invalid-value
    rule priority=150 from="10.0.0.0/24"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error missing-property
    rule priority=160 dport="80-90" table=200
//                           ^^^^^ error missing-property
    rule priority=170 ipproto="tcp" dport="80,443" table=200
//                                         ^^^^^^ error invalid-value
    rule priority=180 fwmark="0x11/0x1" table=200
//                            ^^^^ error invalid-value
    rule priority=190 goto=180 table=200
//                         ^^^ error invalid-value
//                         ^^^ error invalid-value
    route "10.5.0.0/16" via="10.0.0.1" {
//                           ^^^^^^^^ error invalid-value
        nexthop via="10.0.0.1" dev="eth0"
        nexthop weight=2
//      ^^^^^^^^^^^^^^^^ error missing-property
    }
    route "10.6.0.0/16" type="local"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error missing-property
}
"#,
        );
    }
}

#[cfg(test)]
mod link_kind_tests {
    use crate::fixture::check;
    use crate::ir::{LinkKind, NetnsId};
    use netcfg_lang::parse_str;

    fn fleet(src: &str) -> crate::ir::Fleet {
        let parsed = parse_str("t.kdl", src);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        crate::compile(&parsed.spec).fleet
    }

    #[test]
    fn stacked_kinds_resolve_their_parents_masters_and_options() {
        let f = fleet(
            r#"
node "n" {
    ethernet "eno1" master="bond0"
    ethernet "eno2" master="bond0"
    bond "bond0" mode="active-backup" miimon=100 primary="eno2"
    vlan "bond0.20" parent="bond0" id=20 protocol="802.1ad"
    vrf "blue" table=10
    dummy "d0" master="blue" promisc=#true txqueuelen=10 arp=#false
    loopback { address "10.255.0.1/32"; }
    netns "app" {
        ipvlan "ipvl0" parent="eno1" mode="l3"
        loopback { address "10.255.0.2/32"; }
    }
    gre "gre1" remote="192.0.2.2" key=7 dev="eno1"
}
"#,
        );
        let n = &f.nodes[0];
        let id = |ns, name| n.find_link(ns, name).unwrap_or_else(|| panic!("{name}")).id;
        let bond = n.link(id(NetnsId::HOST, "bond0"));
        let LinkKind::Bond(b) = &bond.kind else { panic!("{:?}", bond.kind) };
        assert_eq!(b.primary.as_ref().map(|p| p.value), Some(id(NetnsId::HOST, "eno2")));
        assert_eq!(b.miimon, Some(100));
        let LinkKind::Vlan { parent, id: vid, protocol } = &n.link(id(NetnsId::HOST, "bond0.20")).kind else {
            panic!()
        };
        assert_eq!((parent.value, vid.value, protocol.keyword()), (bond.id, 20, "802.1ad"));
        let d0 = n.link(id(NetnsId::HOST, "d0"));
        assert_eq!(n.vrf_table(d0), Some(10));
        assert_eq!(d0.options.txqueuelen.as_ref().map(|v| v.value), Some(10));
        let app = n.find_netns("app").expect("app").id;
        // The parent is not in `app`: it is the host's.
        let LinkKind::Ipvlan { parent, .. } = &n.link(id(app, "ipvl0")).kind else { panic!() };
        assert_eq!(parent.value, id(NetnsId::HOST, "eno1"));
        let lo = |ns| n.link(id(ns, "lo")).addresses.iter().map(|a| a.net.to_string()).collect::<Vec<_>>();
        assert_eq!(lo(NetnsId::HOST), ["127.0.0.1/8", "::1/128", "10.255.0.1/32"]);
        assert_eq!(lo(app), ["127.0.0.1/8", "::1/128", "10.255.0.2/32"]);
        let LinkKind::Tunnel(t) = &n.link(id(NetnsId::HOST, "gre1")).kind else { panic!() };
        assert_eq!((t.key, t.dev.as_ref().map(|d| d.value)), (Some(7), Some(id(NetnsId::HOST, "eno1"))));
    }

    #[test]
    fn link_kind_mistakes() {
        check(
            r#"
node "n" {
    ethernet "eno1"
    ethernet "eno2" master="bond0"
    bond "bond0" mode="active-backup" primary="eno1"
//                                             ^^^^ error invalid-reference
    bond "bond1" mode="balance-xor" lacp-rate="fast"
//                                             ^^^^ error invalid-value
    bond "bond2" mode="802.3d"
//                     ^^^^^^ error invalid-value
    vlan "v0" parent="eno1" id=4095
//                             ^^^^ error invalid-value
    vlan "v1" id=10
//  ^^^^^^^^^^^^^^^ error missing-property
    vlan "v2" parent="eno9" id=10
//                    ^^^^ error undefined-reference
    ethernet "eno3" master="v2"
    ethernet "eno4" master="eno1"
//                          ^^^^ error invalid-reference
    gre "g0" remote="2001:db8::1"
//                   ^^^^^^^^^^^ error invalid-value
    ip6tnl "t6" remote="2001:db8::1" local="192.0.2.1"
//                                          ^^^^^^^^^ error invalid-value
    ipip "t4" remote="192.0.2.9" key=3
//                               ^^^ error unknown-property
    vrf "blue"
//  ^^^^^^^^^^ error missing-property
}
"#,
        );
    }

    #[test]
    fn vrf_tables_hold_their_ports_connected_routes() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "192.0.2.2/24"; }
    vrf "mgmt" table=10
    ethernet "eth1" master="mgmt" { address "10.99.0.5/24"; }
    route "default" via="10.99.0.1" table=10
    route "10.1.0.0/16" via="10.99.0.1"
//                           ^^^^^^^^^ error gateway-not-on-link
    route "default" via="192.0.2.1"
}
"#,
        );
    }

    #[test]
    fn stacked_links_may_not_outgrow_their_parent() {
        check(
            r#"
node "n" {
    ethernet "eno1" mtu=1500
    vlan "eno1.5" parent="eno1" id=5 mtu=9000
//                                       ^^^^ error mtu-mismatch
    vlan "eno1.6" parent="eno1" id=6
    vlan "eno1.6.7" parent="eno1.6" id=7 mtu=1500 protocol="802.1q"
    vrf "blue" table=10
    ethernet "eno2" master="blue" mtu=9000
}
"#,
        );
    }
}

#[cfg(test)]
mod dhcp_tests {
    use crate::fixture::check;

    /// A cloud host: the NIC's address and default route come from DHCP. Masquerade out of it
    /// and a backend beyond it are not findings; without `dhcp` the masquerade is.
    #[test]
    fn dhcp_links_have_addresses_and_a_default_route_at_run_time() {
        check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" dhcp=#true
    bridge "br0" { address "10.244.0.1/24"; }
    masquerade from="10.244.0.0/24" out="eth0"
    service "web" vip="10.96.0.10" port=80 {
        backend "192.0.2.50:8080"
    }
}
"#,
        );
        check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0"
    bridge "br0" { address "10.244.0.1/24"; }
    masquerade from="10.244.0.0/24" out="eth0"
//                                       ^^^^ error masquerade-without-egress
}
"#,
        );
    }
}
