//! A blueprint's flow drawn for people, as Mermaid or Graphviz DOT.
//!
//! One walk (`Graph::build`) turns the flow tree into a small picture — vertices, edges and
//! nested clusters, numbered in document order — and the two writers only print that picture, so
//! both formats always show the same thing.

mod dot;
mod expr;
mod mermaid;

pub use dot::dot;
pub use expr::describe_expr;
pub use mermaid::mermaid;

use crate::blueprint::Blueprint;
use crate::flow::{Node, Step};

/// The text formats a flow graph can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid `flowchart`, for Markdown viewers.
    Mermaid,
    /// A Graphviz `digraph`, for `dot -Tsvg`.
    Dot,
}

/// Draws `bp`'s flow in `format`.
pub fn render(bp: &Blueprint, format: GraphFormat) -> String {
    match format {
        GraphFormat::Mermaid => mermaid(bp),
        GraphFormat::Dot => dot(bp),
    }
}

/// What a vertex stands for; each writer picks its own shape for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Terminal,
    Step,
    Decision,
    /// Where paths rejoin, or an empty seq: a point with no text.
    Merge,
    LoopHeader,
    Fork,
    Join,
    Assign,
    /// A `wait` node: the flow stops for a signal.
    Wait,
}

struct Vertex {
    id: usize,
    shape: Shape,
    /// Unescaped label lines; the writers escape them and choose the line break.
    lines: Vec<String>,
}

struct Cluster {
    id: usize,
    label: &'static str,
    items: Vec<Item>,
}

enum Item {
    Vertex(Vertex),
    Cluster(Cluster),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeKind {
    Forward,
    /// A loop's way back to its header.
    Back,
    /// From a whole `try` body to its catch.
    Error,
}

struct Edge {
    from: usize,
    /// Set when the edge leaves a whole cluster; `from` is then a vertex inside it, which DOT
    /// needs to anchor the edge.
    from_cluster: Option<usize>,
    to: usize,
    label: Option<String>,
    kind: EdgeKind,
}

/// Where control leaves a drawn node. A loop leaves from its header, so the edge that follows
/// it carries the header's `done` label.
#[derive(Clone, Copy)]
struct Exit {
    id: usize,
    label: Option<&'static str>,
}

/// The picture both writers print.
struct Graph {
    title: String,
    items: Vec<Item>,
    edges: Vec<Edge>,
}

impl Graph {
    fn build(bp: &Blueprint) -> Graph {
        let mut b = Builder { bp, vertices: 0, clusters: 0, edges: Vec::new() };
        let mut items = Vec::new();
        let start = b.vertex(&mut items, Shape::Terminal, vec!["start".into()]);
        let (entry, exit) = b.node(&bp.flow, &mut items);
        b.edge(Exit { id: start, label: None }, entry, None, EdgeKind::Forward);
        let end = b.vertex(&mut items, Shape::Terminal, vec!["end".into()]);
        b.edge(exit, end, None, EdgeKind::Forward);
        // The walk adds an edge only once both ends exist; sorting puts them back in reading order.
        let mut edges = b.edges;
        edges.sort_by_key(|e| (e.from, e.to));
        Graph { title: bp.id.clone(), items, edges }
    }
}

struct Builder<'a> {
    bp: &'a Blueprint,
    vertices: usize,
    clusters: usize,
    edges: Vec<Edge>,
}

impl Builder<'_> {
    /// Draws `node` into `out` and returns where control enters and leaves it.
    fn node(&mut self, node: &Node, out: &mut Vec<Item>) -> (usize, Exit) {
        match node {
            Node::Step(step) => {
                let id = self.vertex(out, Shape::Step, self.step_lines(step));
                (id, Exit { id, label: None })
            }
            Node::Seq { children } if children.is_empty() => {
                let id = self.vertex(out, Shape::Merge, Vec::new());
                (id, Exit { id, label: None })
            }
            Node::Seq { children } => {
                let (entry, mut exit) = self.node(&children[0], out);
                for child in &children[1..] {
                    let (next, next_exit) = self.node(child, out);
                    self.edge(exit, next, None, EdgeKind::Forward);
                    exit = next_exit;
                }
                (entry, exit)
            }
            Node::Branch { cond, then_branch, else_branch } => {
                let decision = self.vertex(out, Shape::Decision, vec![describe_expr(cond)]);
                let (then_entry, then_exit) = self.node(then_branch, out);
                let (else_entry, else_exit) = self.node(else_branch, out);
                let merge = self.vertex(out, Shape::Merge, Vec::new());
                let from = Exit { id: decision, label: None };
                self.edge(from, then_entry, Some("true".into()), EdgeKind::Forward);
                self.edge(from, else_entry, Some("false".into()), EdgeKind::Forward);
                self.edge(then_exit, merge, None, EdgeKind::Forward);
                self.edge(else_exit, merge, None, EdgeKind::Forward);
                (decision, Exit { id: merge, label: None })
            }
            Node::Loop { counter, cond, max, body } => {
                let lines = vec![format!("while {}", describe_expr(cond)), format!("max {max}, counter {counter}")];
                let header = self.vertex(out, Shape::LoopHeader, lines);
                let (body_entry, body_exit) = self.node(body, out);
                self.edge(Exit { id: header, label: None }, body_entry, None, EdgeKind::Forward);
                self.edge(body_exit, header, Some("next".into()), EdgeKind::Back);
                (header, Exit { id: header, label: Some("done") })
            }
            Node::Fanout(fanout) => {
                let mut fork_lines = vec![format!("for each {} in {}", fanout.bind, describe_expr(&fanout.items))];
                // 0 means unbounded, which is also what an absent cap means.
                if let Some(n) = fanout.max_concurrency.filter(|&n| n > 0) {
                    fork_lines.push(format!("max_concurrency {n}"));
                }
                let fork = self.vertex(out, Shape::Fork, fork_lines);
                let (body_entry, body_exit, _) = self.cluster(out, "lane", &fanout.body);
                let mut join_lines = vec![format!("join: {}", fanout.join.name()), format!("→ {}", fanout.out)];
                if let Some(collect) = &fanout.collect {
                    join_lines.push(format!("collect {collect}"));
                }
                let join = self.vertex(out, Shape::Join, join_lines);
                self.edge(Exit { id: fork, label: None }, body_entry, None, EdgeKind::Forward);
                self.edge(body_exit, join, None, EdgeKind::Forward);
                (fork, Exit { id: join, label: None })
            }
            Node::Try { body, catch, err_at } => {
                let (body_entry, body_exit, try_cluster) = self.cluster(out, "try", body);
                let (catch_entry, catch_exit, _) = self.cluster(out, "catch", catch);
                let merge = self.vertex(out, Shape::Merge, Vec::new());
                let label = match err_at {
                    Some(at) => format!("on error → {at}"),
                    None => "on error".into(),
                };
                self.edges.push(Edge {
                    from: body_exit.id,
                    from_cluster: Some(try_cluster),
                    to: catch_entry,
                    label: Some(label),
                    kind: EdgeKind::Error,
                });
                self.edge(body_exit, merge, None, EdgeKind::Forward);
                self.edge(catch_exit, merge, None, EdgeKind::Forward);
                (body_entry, Exit { id: merge, label: None })
            }
            Node::Assign { at, value } => {
                let id = self.vertex(out, Shape::Assign, vec![format!("{at} := {}", describe_expr(value))]);
                (id, Exit { id, label: None })
            }
            Node::Wait(wait) => {
                let signal = match &wait.signal {
                    crate::flow::SignalName::Name(name) => name.clone(),
                    crate::flow::SignalName::Expr(expr) => describe_expr(expr),
                };
                let mut lines = vec![format!("wait for {signal}")];
                if let Some(out) = &wait.out {
                    lines.push(format!("→ {out}"));
                }
                if let Some(ms) = wait.timeout_ms {
                    lines.push(format!("timeout {ms} ms"));
                }
                let id = self.vertex(out, Shape::Wait, lines);
                (id, Exit { id, label: None })
            }
            // Every kind above has a drawing; a new kind is drawn plainly until it gets one.
            #[allow(unreachable_patterns)]
            other => self.plain(other, out),
        }
    }

    /// A box naming the node's kind, then each child in a cluster named by its slot, one after
    /// another.
    fn plain(&mut self, node: &Node, out: &mut Vec<Item>) -> (usize, Exit) {
        let id = self.vertex(out, Shape::Step, vec![node.kind_name().to_string()]);
        let mut exit = Exit { id, label: None };
        for (slot, child) in node.children() {
            let (entry, child_exit, _) = self.cluster(out, slot.field(), child);
            self.edge(exit, entry, None, EdgeKind::Forward);
            exit = child_exit;
        }
        (id, exit)
    }

    /// Draws `node` inside a new cluster; also returns the cluster's id.
    fn cluster(&mut self, out: &mut Vec<Item>, label: &'static str, node: &Node) -> (usize, Exit, usize) {
        let id = self.clusters;
        self.clusters += 1;
        let mut items = Vec::new();
        let (entry, exit) = self.node(node, &mut items);
        out.push(Item::Cluster(Cluster { id, label, items }));
        (entry, exit, id)
    }

    fn step_lines(&self, step: &Step) -> Vec<String> {
        let title = match self.bp.agent(&step.agent) {
            Some(agent) => format!("{} ({})", step.agent, agent.kind),
            None => step.agent.clone(),
        };
        let mut lines = vec![title, format!("→ {}", step.out)];
        let mut notes = Vec::new();
        if let Some(ms) = step.timeout_ms {
            notes.push(format!("timeout {ms}ms"));
        }
        if let Some(retry) = &step.retry {
            notes.push(format!("retry ×{}", retry.max_attempts));
        }
        if !notes.is_empty() {
            lines.push(notes.join(" · "));
        }
        lines
    }

    fn vertex(&mut self, out: &mut Vec<Item>, shape: Shape, lines: Vec<String>) -> usize {
        let id = self.vertices;
        self.vertices += 1;
        out.push(Item::Vertex(Vertex { id, shape, lines }));
        id
    }

    /// Adds an edge; a label waiting on `from` (a loop's `done`) goes first.
    fn edge(&mut self, from: Exit, to: usize, label: Option<String>, kind: EdgeKind) {
        let label = match (from.label, label) {
            (Some(a), Some(b)) => Some(format!("{a}, {b}")),
            (Some(a), None) => Some(a.to_string()),
            (None, b) => b,
        };
        self.edges.push(Edge { from: from.id, from_cluster: None, to, label, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blueprint(id: &str, agents: &str, flow: &str) -> Blueprint {
        let id = serde_json::to_string(id).unwrap();
        Blueprint::from_json(&format!(r#"{{"id":{id},"agents":[{agents}],"flow":{flow}}}"#)).unwrap()
    }

    fn step(agent: &str, out: &str) -> String {
        format!(r#"{{"kind":"step","ref":"{agent}","in":{{"op":"path","at":"$"}},"out":{{"op":"path","at":"{out}"}}}}"#)
    }

    /// A seq of two steps, the second with a timeout and a retry policy.
    pub(super) fn tiny() -> Blueprint {
        let agents = r#"{"name":"fetch","kind":"rust_fn","spec":{"fn_id":"echo"}},{"name":"summarize","kind":"lua"}"#;
        let second = r#"{"kind":"step","ref":"summarize","in":{"op":"path","at":"$.raw"},
            "out":{"op":"path","at":"$.summary"},"timeout_ms":500,"retry":{"max_attempts":3}}"#;
        blueprint("tiny", agents, &format!(r#"{{"kind":"seq","children":[{},{second}]}}"#, step("fetch", "$.raw")))
    }

    /// Every node kind: a branch with an empty else, a try whose body holds a loop and a fanout
    /// (so the lane cluster nests in the try cluster), and a closing assign.
    pub(super) fn every_kind() -> Blueprint {
        let agents =
            ["fetch:rust_fn", "publish:subprocess", "risky:operator", "refine:lua", "analyze:lua", "grade:lua"]
                .map(|a| {
                    let (name, kind) = a.split_once(':').unwrap();
                    format!(r#"{{"name":"{name}","kind":"{kind}"}}"#)
                })
                .join(",");
        let branch = format!(
            r#"{{"kind":"branch","cond":{{"op":"gte","lhs":{{"op":"path","at":"$.score"}},"rhs":{{"op":"lit","value":0.8}}}},
                "then":{},"else":{{"kind":"seq","children":[]}}}}"#,
            step("publish", "$.published")
        );
        let loop_ = format!(
            r#"{{"kind":"loop","counter":{{"op":"path","at":"$.n"}},"max":3,"body":{},
                "cond":{{"op":"lt","lhs":{{"op":"path","at":"$.n"}},"rhs":{{"op":"lit","value":3}}}}}}"#,
            step("refine", "$.draft")
        );
        let fanout = format!(
            r#"{{"kind":"fanout","items":{{"op":"path","at":"$.items"}},"bind":{{"op":"path","at":"$.item"}},
                "body":{{"kind":"seq","children":[{},{}]}},"join":"all_settled","out":{{"op":"path","at":"$.results"}},
                "max_concurrency":4,"collect":{{"op":"path","at":"$.item_out"}}}}"#,
            step("analyze", "$.analysis"),
            step("grade", "$.item_out")
        );
        let try_ = format!(
            r#"{{"kind":"try","body":{{"kind":"seq","children":[{},{loop_},{fanout}]}},"catch":{},
                "err_at":{{"op":"path","at":"$.err"}}}}"#,
            step("risky", "$.risky"),
            step("recover", "$.recovered")
        );
        let assign = r#"{"kind":"assign","at":{"op":"path","at":"$.done"},"value":{"op":"lit","value":true}}"#;
        let wait = r#"{"kind":"wait","signal":"approve","out":{"op":"path","at":"$.approval"},"timeout_ms":60000}"#;
        let flow =
            format!(r#"{{"kind":"seq","children":[{},{branch},{try_},{assign},{wait}]}}"#, step("fetch", "$.raw"));
        blueprint("every-kind", &agents, &flow)
    }

    /// Text that breaks naive quoting: quotes and angle brackets, and a bracketed path key.
    pub(super) fn awkward() -> Blueprint {
        blueprint(r#"we "quote""#, "", &step(r#"odd \"agent\" <x>"#, r#"$[\"key.with.dots\"]"#))
    }

    fn vertices<'a>(items: &'a [Item], all: &mut Vec<&'a Vertex>) {
        for item in items {
            match item {
                Item::Vertex(v) => all.push(v),
                Item::Cluster(c) => vertices(&c.items, all),
            }
        }
    }

    #[test]
    fn nothing_dangles() {
        let graph = Graph::build(&every_kind());
        let mut all = Vec::new();
        vertices(&graph.items, &mut all);
        let ids: Vec<usize> = all.iter().map(|v| v.id).collect();
        assert_eq!(ids, (0..all.len()).collect::<Vec<_>>(), "ids are unique and dense");
        let (start, end) = (0, all.len() - 1);
        assert_eq!(all[start].lines, ["start"]);
        assert_eq!(all[end].lines, ["end"]);
        for &id in &ids {
            let leaves = graph.edges.iter().any(|e| e.from == id && e.from_cluster.is_none());
            let enters = graph.edges.iter().any(|e| e.to == id);
            assert_eq!(leaves, id != end, "n{id} has no way out");
            assert_eq!(enters, id != start, "n{id} has no way in");
        }
    }

    #[test]
    fn a_kind_without_a_drawing_is_drawn_plainly() {
        let bp = every_kind();
        let Node::Seq { children } = &bp.flow else { panic!() };
        let mut b = Builder { bp: &bp, vertices: 0, clusters: 0, edges: Vec::new() };
        let mut items = Vec::new();
        let (entry, exit) = b.plain(&children[2], &mut items);
        assert_eq!((entry, exit.id), (0, b.vertices - 1));
        let Item::Vertex(first) = &items[0] else { panic!() };
        assert_eq!(first.lines, ["try"]);
        let labels: Vec<&str> = items
            .iter()
            .filter_map(|item| match item {
                Item::Cluster(c) => Some(c.label),
                Item::Vertex(_) => None,
            })
            .collect();
        assert_eq!(labels, ["body", "catch"]);
        for id in 1..b.vertices {
            assert!(b.edges.iter().any(|e| e.to == id), "n{id} has no way in");
        }
    }

    #[test]
    fn both_formats_name_every_agent_and_every_marker() {
        let bp = every_kind();
        for format in [GraphFormat::Mermaid, GraphFormat::Dot] {
            let text = render(&bp, format);
            for agent in &bp.agents {
                assert!(text.contains(&format!("{} ({})", agent.name, agent.kind)), "{format:?} lacks {}", agent.name);
            }
            // `recover` is not declared, so it is drawn by name alone.
            for needle in [
                "recover",
                "every-kind",
                "max 3",
                "join: all_settled",
                "\"try\"",
                "\"catch\"",
                "on error",
                "wait for approve",
                "→ $.approval",
                "timeout 60000 ms",
            ] {
                assert!(text.contains(needle), "{format:?} lacks {needle}:\n{text}");
            }
            assert!(text.contains("\"true\"") && text.contains("\"false\""), "{format:?}:\n{text}");
        }
        assert!(mermaid(&bp).starts_with("---\ntitle: \"every-kind\"\n---\nflowchart TD\n"));
        assert!(mermaid(&bp).contains("[(\"wait for approve"), "a wait is drawn as a cylinder");
        assert!(dot(&bp).contains("shape=cylinder"), "a wait is drawn as a cylinder");
        assert!(dot(&bp).starts_with("digraph \"every-kind\" {\n"));
    }
}
