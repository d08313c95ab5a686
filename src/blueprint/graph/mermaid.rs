//! The Mermaid writer: a `flowchart TD` with the blueprint id as its front-matter title.

use std::fmt::Write;

use super::{EdgeKind, Graph, Item, Shape};
use crate::blueprint::Blueprint;

/// Draws `bp`'s flow as a Mermaid flowchart: vertices `n0, n1, …`, try/catch and fanout-lane
/// subgraphs `c0, c1, …`, then every edge.
pub fn mermaid(bp: &Blueprint) -> String {
    let graph = Graph::build(bp);
    // JSON strings are valid YAML double-quoted scalars, so any id is a safe title.
    let title = serde_json::to_string(&graph.title).expect("a string always encodes");
    let mut out = format!("---\ntitle: {title}\n---\nflowchart TD\n");
    write_items(&graph.items, 1, &mut out);
    // Edges come after every subgraph so that no edge declares a node outside its subgraph.
    for edge in &graph.edges {
        let from = match edge.from_cluster {
            Some(cluster) => format!("c{cluster}"),
            None => format!("n{}", edge.from),
        };
        let arrow = match edge.kind {
            EdgeKind::Forward => "-->",
            EdgeKind::Back | EdgeKind::Error => "-.->",
        };
        match &edge.label {
            Some(label) => writeln!(out, "    {from} {arrow}|\"{}\"| n{}", escape(label), edge.to),
            None => writeln!(out, "    {from} {arrow} n{}", edge.to),
        }
        .expect("writing to a String cannot fail");
    }
    out
}

fn write_items(items: &[Item], depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    for item in items {
        match item {
            Item::Vertex(v) => {
                let (open, close) = brackets(v.shape);
                // A merge point has no text; a blank keeps its circle small.
                let text = if v.lines.is_empty() {
                    " ".to_string()
                } else {
                    v.lines.iter().map(|l| escape(l)).collect::<Vec<_>>().join("<br/>")
                };
                writeln!(out, "{indent}n{}{open}\"{text}\"{close}", v.id).expect("writing to a String cannot fail");
            }
            Item::Cluster(c) => {
                writeln!(out, "{indent}subgraph c{}[\"{}\"]", c.id, escape(c.label))
                    .expect("writing to a String cannot fail");
                write_items(&c.items, depth + 1, out);
                writeln!(out, "{indent}end").expect("writing to a String cannot fail");
            }
        }
    }
}

fn brackets(shape: Shape) -> (&'static str, &'static str) {
    match shape {
        Shape::Terminal => ("([", "])"),
        Shape::Step => ("[", "]"),
        Shape::Decision => ("{", "}"),
        Shape::Merge => ("((", "))"),
        Shape::LoopHeader => ("{{", "}}"),
        Shape::Fork => ("[/", "\\]"),
        Shape::Join => ("[\\", "/]"),
        Shape::Assign => ("(", ")"),
        Shape::Wait => ("[(", ")]"),
    }
}

/// Makes text safe inside a quoted Mermaid label. Mermaid decodes `#name;` and `#NNN;` itself,
/// so `#` is encoded too, and `<`, `>`, `&` would otherwise reach the HTML label as markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            // A leading backtick would turn the label into Markdown.
            '`' => out.push_str("#96;"),
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{every_kind, tiny};
    use super::*;

    #[test]
    fn a_seq_of_two_steps_prints_exactly() {
        let expected = r#"---
title: "tiny"
---
flowchart TD
    n0(["start"])
    n1["fetch (rust_fn)<br/>→ $.raw"]
    n2["summarize (lua)<br/>→ $.summary<br/>timeout 500ms · retry ×3"]
    n3(["end"])
    n0 --> n1
    n1 --> n2
    n2 --> n3
"#;
        assert_eq!(mermaid(&tiny()), expected);
    }

    #[test]
    fn every_node_kind_has_its_shape_and_edges() {
        let text = mermaid(&every_kind());
        for needle in [
            "{\"$.score #gt;= 0.8\"}",
            "-->|\"true\"|",
            "-->|\"false\"|",
            "{{\"while $.n #lt; 3<br/>max 3, counter $.n\"}}",
            "-.->|\"next\"|",
            "-->|\"done\"|",
            "[/\"for each $.item in $.items<br/>max_concurrency 4\"\\]",
            "[\\\"join: all_settled<br/>→ $.results<br/>collect $.item_out\"/]",
            "    subgraph c0[\"try\"]",
            "        subgraph c1[\"lane\"]",
            "    subgraph c2[\"catch\"]",
            "c0 -.->|\"on error → $.err\"|",
            "(\"$.done := true\")",
            "((\" \"))",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(text.matches("subgraph").count(), text.lines().filter(|l| l.trim() == "end").count());
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape(r#"say "hi" <b> & #1 `x`"#), "say #quot;hi#quot; #lt;b#gt; #amp; #35;1 #96;x#96;");
        let text = mermaid(&super::super::tests::awkward());
        assert!(text.contains(r#"title: "we \"quote\"""#), "{text}");
        assert!(text.contains(r#"n1["odd #quot;agent#quot; #lt;x#gt;<br/>→ $[#quot;key.with.dots#quot;]"]"#), "{text}");
    }
}
