//! Walks a flow tree with each node's pointer: `""` for the root, then `/children/2`,
//! `/then`, `/else`, `/body`, `/catch`. The Lua builders compute the same pointers for their
//! source map, so a compile error about a node can name the line that built it.

use crate::flow::Node;

/// Calls `f(pointer, node)` for every node, parents before children, in document order.
pub fn walk<'a>(node: &'a Node, f: &mut impl FnMut(&str, &'a Node)) {
    let mut pointer = String::new();
    walk_at(node, &mut pointer, f);
}

fn walk_at<'a>(node: &'a Node, pointer: &mut String, f: &mut impl FnMut(&str, &'a Node)) {
    f(pointer, node);
    let mut child = |suffix: &str, node: &'a Node, pointer: &mut String| {
        let len = pointer.len();
        pointer.push_str(suffix);
        walk_at(node, pointer, f);
        pointer.truncate(len);
    };
    match node {
        Node::Seq { children } => {
            for (i, c) in children.iter().enumerate() {
                child(&format!("/children/{i}"), c, pointer);
            }
        }
        Node::Branch { then_branch, else_branch, .. } => {
            child("/then", then_branch, pointer);
            child("/else", else_branch, pointer);
        }
        Node::Loop { body, .. } => child("/body", body, pointer),
        Node::Fanout(fanout) => child("/body", &fanout.body, pointer),
        Node::Try { body, catch, .. } => {
            child("/body", body, pointer);
            child("/catch", catch, pointer);
        }
        Node::Step(_) | Node::Assign { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_follow_the_wire_field_names() {
        let text = r#"{"kind":"seq","children":[
            {"kind":"assign","at":{"op":"path","at":"$.a"},"value":{"op":"lit","value":1}},
            {"kind":"try","body":{"kind":"seq","children":[]},"catch":{"kind":"branch","cond":{"op":"lit","value":true},
              "then":{"kind":"seq","children":[]},"else":{"kind":"seq","children":[]}}}]}"#;
        let node: Node = serde_json::from_str(text).unwrap();
        let mut seen = Vec::new();
        walk(&node, &mut |p, n| seen.push(format!("{p}={}", n.kind_name())));
        assert_eq!(
            seen,
            [
                "=seq",
                "/children/0=assign",
                "/children/1=try",
                "/children/1/body=seq",
                "/children/1/catch=branch",
                "/children/1/catch/then=seq",
                "/children/1/catch/else=seq",
            ]
        );
    }
}
