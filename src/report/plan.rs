//! A live plan as text for a reviewer: one line per op (`+` add, `~` change, `-` remove, with
//! the disruption class), and under an nft op each rule, chain, set and element it changes,
//! with the `file:line:col` of the spec text behind it. Colour (green/yellow/red by sign) when
//! the style says so ([`super::human::Style`]: the same NO_COLOR/CLICOLOR rules as diagnostics).

use super::human::Style;
use super::Location;
use netcfg_backends::netlink::Plan;
use netcfg_lang::SourceMap;
use std::fmt::Write;

fn paint(style: &Style, sign: char, text: &str) -> String {
    if !style.color {
        return text.to_string();
    }
    let code = match sign {
        '+' => "32",
        '-' => "31",
        _ => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn dim(style: &Style, text: &str) -> String {
    if style.color {
        format!("\x1b[2m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The plan, as `plan --live` prints it.
pub fn render(plan: &Plan, sources: &SourceMap, style: &Style) -> String {
    render_lines(plan, &plan.lines(), sources, style)
}

/// [`render`] with the op lines of [`Plan::lines`] already made.
pub fn render_lines(plan: &Plan, lines: &[String], sources: &SourceMap, style: &Style) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "node {}", plan.node);
    if plan.ops.is_empty() {
        s.push_str("  no changes\n");
        return s;
    }
    let at = |span| {
        let l = Location::of(sources, span);
        format!("{}:{}:{}", l.file, l.line, l.column)
    };
    s.reserve(lines.iter().map(|l| l.len() + 24).sum());
    for (op, line) in plan.ops.iter().zip(lines) {
        let sign = op.sign();
        if style.color {
            let _ = writeln!(s, "  {}  {}", paint(style, sign, line), dim(style, &format!("[{}]", op.class.as_str())));
        } else {
            for part in ["  ", line, "  [", op.class.as_str(), "]\n"] {
                s.push_str(part);
            }
        }
        for c in op.table_changes() {
            let sign = c.kind.sign();
            let what = match &c.old {
                Some(old) => format!("{sign} {}: `{old}` -> `{}`", c.object, c.text),
                None => format!("{sign} {}: `{}`", c.object, c.text),
            };
            let _ = write!(s, "      {}", paint(style, sign, &what));
            match c.span {
                Some(span) => {
                    let _ = writeln!(s, "  {}", dim(style, &format!("({})", at(span))));
                }
                None => s.push('\n'),
            }
        }
    }
    let count = |c: char| plan.ops.iter().filter(|o| o.sign() == c).count();
    let _ = writeln!(s, "{} to add, {} to change, {} to remove", count('+'), count('~'), count('-'));
    s
}
