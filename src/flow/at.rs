//! Where the evaluator is in the flow, so an error can name its node: a chain of pointer
//! segments that lives on the evaluator's own stack (each node's future holds its link), costs
//! nothing to extend, and is rendered (`/children/2/cond`) only when an error needs it.
//! Segments follow the wire field names, as the pointers of compile errors and the journal do.

/// One node's (or one field's) place: its parent's place plus one segment.
#[derive(Clone, Copy)]
pub struct At<'p> {
    parent: Option<&'p At<'p>>,
    segment: Segment,
}

#[derive(Clone, Copy)]
enum Segment {
    Root,
    /// `/children/N` of a `seq`.
    Child(usize),
    /// A named field: a child node (`body`, `then`) or an expression or path (`cond`, `out`).
    Field(&'static str),
}

impl<'p> At<'p> {
    /// The flow's root node (pointer `""`).
    pub const ROOT: At<'static> = At { parent: None, segment: Segment::Root };

    /// Child `index` of this `seq`.
    pub fn child(&'p self, index: usize) -> At<'p> {
        At { parent: Some(self), segment: Segment::Child(index) }
    }

    /// The node or expression in field `name` of this node.
    pub fn field(&'p self, name: &'static str) -> At<'p> {
        At { parent: Some(self), segment: Segment::Field(name) }
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
        for segment in segments.iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Child(i) => pointer.push_str(&format!("/children/{i}")),
                Segment::Field(name) => {
                    pointer.push('/');
                    pointer.push_str(name);
                }
            }
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
