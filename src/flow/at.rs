//! Where the evaluator is in the flow, so an error can name its node: a chain of pointer
//! segments that lives on the evaluator's own stack (each node's future holds its link), costs
//! nothing to extend, and is rendered (`/children/2/cond`) only when an error needs it.
//! Segments are the [`Slot`]s of [`Node::children`](super::ir::Node::children), so these pointers
//! are the ones compile errors and the journal use.

use super::ir::Slot;

/// One node's (or one field's) place: its parent's place plus one segment.
#[derive(Clone, Copy)]
pub struct At<'p> {
    parent: Option<&'p At<'p>>,
    segment: Segment,
}

/// `None` for the root; else a child's slot (`children/2`, `body`) or a field holding an
/// expression or path (`cond`, `out`), rendered as the node walk renders slots.
type Segment = Option<Slot>;

impl<'p> At<'p> {
    /// The flow's root node (pointer `""`).
    pub const ROOT: At<'static> = At { parent: None, segment: None };

    /// Child `index` of this `seq`.
    pub fn child(&'p self, index: usize) -> At<'p> {
        At { parent: Some(self), segment: Some(Slot::Item("children", index)) }
    }

    /// The node or expression in field `name` of this node.
    pub fn field(&'p self, name: &'static str) -> At<'p> {
        At { parent: Some(self), segment: Some(Slot::Field(name)) }
    }

    /// The pointer, e.g. `/children/2/cond`.
    pub fn pointer(&self) -> String {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(link) = at {
            segments.push(link.segment);
            at = link.parent;
        }
        let mut pointer = String::new();
        for slot in segments.iter().rev().flatten() {
            pointer.push('/');
            pointer.push_str(&slot.to_string());
        }
        pointer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_compilers_pointers() {
        let root = At::ROOT;
        assert_eq!(root.pointer(), "");
        let second = root.child(2);
        let body = second.field("body");
        assert_eq!(body.field("cond").pointer(), "/children/2/body/cond");
    }
}
