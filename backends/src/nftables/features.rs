//! The kernel features (nft expression modules) a typed table needs, each with the spec span of
//! the first rule or set that needs it. Derived from the typed ruleset, never from the script
//! text: a new `Expr` variant does not compile until it is given its module here.

use super::ruleset::*;
use crate::kernel::Feature;
use netcfg_lang::Span;
use std::collections::BTreeMap;

/// The features `table` needs, with the first span that needs each; empty for an empty table.
pub fn table_features(table: &Table) -> BTreeMap<Feature, Span> {
    let mut out = BTreeMap::new();
    let mut need = |f: Feature, span: Span| {
        out.entry(f).or_insert(span);
    };
    for set in &table.sets {
        need(Feature::NfTables, set.origin);
        let keys = match &set.key {
            SetKey::Types(_) => &[][..],
            SetKey::Typeof(k) => &k[..],
        };
        let data = match &set.data {
            Some(SetData::Typeof(d)) => &d[..],
            _ => &[][..],
        };
        for k in keys.iter().chain(data) {
            key_features(k, set.origin, &mut need);
        }
    }
    for chain in &table.chains {
        for rule in &chain.rules {
            need(Feature::NfTables, rule.origin);
            if chain.base.as_ref().is_some_and(|b| b.chain_type == ChainType::Nat) {
                need(Feature::NftChainNat, rule.origin);
            }
            for e in &rule.exprs {
                expr_features(e, rule.origin, &mut need);
            }
        }
    }
    out
}

fn selector_feature(sel: Selector) -> Option<Feature> {
    match sel {
        Selector::CtState | Selector::CtStatus | Selector::CtMark => Some(Feature::NftCt),
        // meta and payload expressions are part of nf_tables itself.
        Selector::Iif
        | Selector::IifName
        | Selector::OifName
        | Selector::L4Proto
        | Selector::NfProto
        | Selector::Saddr(_)
        | Selector::Daddr(_)
        | Selector::Dport
        | Selector::Sport
        | Selector::SkUid
        | Selector::IcmpType(_)
        | Selector::IcmpCode(_)
        | Selector::Mark
        | Selector::SkGid
        | Selector::PktType => None,
        Selector::FibDaddrType => Some(Feature::NftFib),
    }
}

fn key_features(k: &KeyExpr, span: Span, need: &mut impl FnMut(Feature, Span)) {
    match k {
        KeyExpr::Sel(s) => {
            if let Some(f) = selector_feature(*s) {
                need(f, span);
            }
        }
        KeyExpr::Numgen(_) => need(Feature::NftNumgen, span),
    }
}

fn expr_features(e: &Expr, span: Span, need: &mut impl FnMut(Feature, Span)) {
    let mut sels = |keys: &[Selector]| {
        for s in keys {
            key_features(&KeyExpr::Sel(*s), span, need);
        }
    };
    match e {
        Expr::Match { sel, .. } => sels(&[*sel]),
        Expr::Lookup { keys, .. } => sels(keys),
        Expr::DnatMap { keys, .. } => {
            need(Feature::NftNat, span);
            for k in keys {
                key_features(k, span, need);
            }
        }
        Expr::Dnat { .. } | Expr::Snat { .. } => need(Feature::NftNat, span),
        Expr::Masquerade => need(Feature::NftMasq, span),
        Expr::Redirect { .. } => need(Feature::NftRedir, span),
        Expr::PrefixNat { .. } => need(Feature::NftNat, span),
        // modprobe brings the per-family halves (nf_tproxy_ipv4, nf_tproxy_ipv6).
        Expr::Tproxy { .. } => need(Feature::NftTproxy, span),
        Expr::Reject(_) => need(Feature::NftRejectInet, span),
        Expr::Log { .. } => need(Feature::NftLog, span),
        Expr::Limit { .. } => need(Feature::NftLimit, span),
        // The dynamic set update itself (nft_dynset) is part of nf_tables.
        Expr::PerKey { key, limit: KeyedLimit::Rate { .. }, .. } => {
            sels(&[*key]);
            need(Feature::NftLimit, span);
        }
        Expr::PerKey { key, limit: KeyedLimit::Connections(_), .. } => {
            sels(&[*key]);
            // modprobe brings what it depends on (nf_conncount, nf_conntrack).
            need(Feature::NftConnlimit, span);
        }
        // Adding to a set (nft_dynset) is part of nf_tables.
        Expr::AddToSet { key, .. } => sels(&[*key]),
        // Named counters are objects of nf_tables itself (counters are built in since 4.x).
        Expr::NamedCounter(_) => {}
        Expr::SetMark { ct: true, .. } => need(Feature::NftCt, span),
        // `meta mark set` is nf_tables' own meta expression.
        Expr::SetMark { ct: false, .. } => {}
        // `notrack` is part of the conntrack expression module.
        Expr::Notrack => need(Feature::NftCt, span),
        // `tcp option maxseg` is an extension header expression; `rt mtu` a routing one.
        Expr::ClampMss { size } => {
            need(Feature::NftExthdr, span);
            if size.is_none() {
                need(Feature::NftRt, span);
            }
        }
        // Payload matches, counters and verdicts are part of nf_tables itself.
        Expr::NeighbourDiscovery | Expr::Verdict(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcfg_lang::FileId;

    fn at(start: u32) -> Span {
        Span { file: FileId(0), start, end: start + 1 }
    }

    fn rule(exprs: Vec<Expr>, start: u32) -> Rule {
        Rule { exprs, comment: None, origin: at(start) }
    }

    #[test]
    fn each_expression_names_its_module_at_the_first_rule_that_uses_it() {
        let table = Table {
            comment: None,
            sets: Vec::new(),
            counters: Vec::new(),
            chains: vec![
                Chain {
                    name: Ident::new("input"),
                    base: None,
                    rules: vec![
                        rule(vec![Expr::Match { sel: Selector::CtState, op: Op::Eq, value: Value::DnatStatus }], 1),
                        rule(vec![Expr::Reject(RejectWith::TcpReset)], 2),
                        rule(vec![Expr::Match { sel: Selector::CtStatus, op: Op::Eq, value: Value::DnatStatus }], 3),
                    ],
                },
                Chain {
                    name: Ident::new("post"),
                    base: Some(BaseChain {
                        chain_type: ChainType::Nat,
                        hook: Hook::Postrouting,
                        priority: Priority::SrcNat,
                        policy: Policy::Accept,
                    }),
                    rules: vec![rule(vec![Expr::Masquerade], 4), rule(vec![Expr::Redirect { port: 1 }], 5)],
                },
            ],
        };
        let f = table_features(&table);
        let got: Vec<(Feature, u32)> = f.iter().map(|(f, s)| (*f, s.start)).collect();
        assert_eq!(
            got,
            [
                (Feature::NfTables, 1),
                (Feature::NftCt, 1),
                (Feature::NftChainNat, 4),
                (Feature::NftMasq, 4),
                (Feature::NftRedir, 5),
                (Feature::NftRejectInet, 2),
            ]
        );
        assert!(table_features(&Table::default()).is_empty());
    }

    #[test]
    fn limits_need_nft_limit_and_connection_counts_nft_connlimit() {
        use netcfg_lang::vocab::RateUnit;
        let set = Ident::new("s");
        let table = Table {
            chains: vec![Chain {
                name: Ident::new("input"),
                base: None,
                rules: vec![
                    rule(vec![Expr::NamedCounter(Ident::new("c")), Expr::Verdict(Verdict::Accept)], 1),
                    rule(
                        vec![Expr::PerKey {
                            set: set.clone(),
                            key: Selector::Saddr(Family::V4),
                            limit: KeyedLimit::Connections(3),
                        }],
                        2,
                    ),
                    rule(vec![Expr::Limit { rate: 1, unit: RateUnit::Second, burst: None }], 3),
                    rule(
                        vec![Expr::PerKey {
                            set,
                            key: Selector::Saddr(Family::V6),
                            limit: KeyedLimit::Rate { rate: 1, unit: RateUnit::Minute, burst: Some(2) },
                        }],
                        4,
                    ),
                    rule(
                        vec![Expr::Log { prefix: Comment::new("x"), level: Some(netcfg_lang::vocab::LogLevel::Info) }],
                        5,
                    ),
                ],
            }],
            ..Table::default()
        };
        let got: Vec<(Feature, u32)> = table_features(&table).iter().map(|(f, s)| (*f, s.start)).collect();
        assert_eq!(
            got,
            [(Feature::NfTables, 1), (Feature::NftLog, 5), (Feature::NftLimit, 3), (Feature::NftConnlimit, 2)]
        );
    }
}
