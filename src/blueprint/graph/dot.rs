//! The Graphviz writer: a `digraph` named and titled by the blueprint id.

use std::fmt::Write;

use super::{EdgeKind, Graph, Item, Shape};
use crate::blueprint::Blueprint;

/// Draws `bp`'s flow as a Graphviz digraph: vertices `n0, n1, …`, try/catch and fanout-lane
/// clusters `cluster_0, cluster_1, …`, then every edge.
pub fn dot(bp: &Blueprint) -> String {
    let graph = Graph::build(bp);
    let title = quote(&graph.title);
    // `compound` lets the on-error edge start at the border of the whole try cluster.
    let mut out = format!("digraph {title} {{\n    label={title};\n    labelloc=t;\n    compound=true;\n");
    write_items(&graph.items, 1, &mut out);
    for edge in &graph.edges {
        let mut attrs = Vec::new();
        if let Some(label) = &edge.label {
            attrs.push(format!("label={}", quote(label)));
        }
        if edge.kind != EdgeKind::Forward {
            attrs.push("style=dashed".to_string());
        }
        if let Some(cluster) = edge.from_cluster {
            attrs.push(format!("ltail=cluster_{cluster}"));
        }
        let attrs = if attrs.is_empty() { String::new() } else { format!(" [{}]", attrs.join(", ")) };
        writeln!(out, "    n{} -> n{}{attrs};", edge.from, edge.to).expect("writing to a String cannot fail");
    }
    out.push_str("}\n");
    out
}

fn write_items(items: &[Item], depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    for item in items {
        match item {
            Item::Vertex(v) => {
                let label = quote(&v.lines.join("\n"));
                writeln!(out, "{indent}n{} [shape={}, label={label}];", v.id, shape(v.shape))
                    .expect("writing to a String cannot fail");
            }
            Item::Cluster(c) => {
                writeln!(out, "{indent}subgraph cluster_{} {{\n{indent}    label={};", c.id, quote(c.label))
                    .expect("writing to a String cannot fail");
                write_items(&c.items, depth + 1, out);
                writeln!(out, "{indent}}}").expect("writing to a String cannot fail");
            }
        }
    }
}

fn shape(shape: Shape) -> &'static str {
    match shape {
        Shape::Terminal => "oval",
        Shape::Step => "box",
        Shape::Decision => "diamond",
        Shape::Merge => "point",
        Shape::LoopHeader => "hexagon",
        Shape::Fork => "trapezium",
        Shape::Join => "invtrapezium",
        Shape::Assign => "box, style=rounded",
        Shape::Wait => "cylinder",
    }
}

/// A DOT double-quoted string. Backslashes are doubled so that Graphviz's own escapes (`\N`,
/// `\l`, ...) cannot be triggered by label text; newlines become centred line breaks.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            _ => out.push(ch),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{awkward, every_kind, tiny};
    use super::*;

    #[test]
    fn a_seq_of_two_steps_prints_exactly() {
        let expected = r#"digraph "tiny" {
    label="tiny";
    labelloc=t;
    compound=true;
    n0 [shape=oval, label="start"];
    n1 [shape=box, label="fetch (rust_fn)\n→ $.raw"];
    n2 [shape=box, label="summarize (lua)\n→ $.summary\ntimeout 500ms · retry ×3"];
    n3 [shape=oval, label="end"];
    n0 -> n1;
    n1 -> n2;
    n2 -> n3;
}
"#;
        assert_eq!(dot(&tiny()), expected);
    }

    #[test]
    fn every_node_kind_has_its_shape_and_edges() {
        let text = dot(&every_kind());
        for needle in [
            "[shape=diamond, label=\"$.score >= 0.8\"]",
            "[label=\"true\"]",
            "[label=\"false\"]",
            "[shape=hexagon, label=\"while $.n < 3\\nmax 3, counter $.n\"]",
            "[label=\"next\", style=dashed]",
            "[label=\"done\"]",
            "[shape=trapezium, label=\"for each $.item in $.items\\nmax_concurrency 4\"]",
            "[shape=invtrapezium, label=\"join: all_settled\\n→ $.results\\ncollect $.item_out\"]",
            "    subgraph cluster_0 {\n        label=\"try\";",
            "        subgraph cluster_1 {\n            label=\"lane\";",
            "    subgraph cluster_2 {\n        label=\"catch\";",
            "[label=\"on error → $.err\", style=dashed, ltail=cluster_0]",
            "[shape=box, style=rounded, label=\"$.done := true\"]",
            "[shape=point, label=\"\"]",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a \"b\" \\N\nc"), r#""a \"b\" \\N\nc""#);
        let text = dot(&awkward());
        assert!(text.starts_with(r#"digraph "we \"quote\"" {"#), "{text}");
        assert!(text.contains(r#"label="odd \"agent\" <x>\n→ $[\"key.with.dots\"]""#), "{text}");
    }
}
