//! A path into a [`Value`](super::Value): `$`, `$.a.b`, `$["key.with.dots"]`, `$.results[0]`.
//! The data and its canonical text live here; parsing, reading and writing are the flow's
//! (`crate::flow::path`).

use std::fmt;
use std::sync::Arc;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// An object key.
    Key(Arc<str>),
    /// An array index, from 0.
    Index(usize),
}

/// A parsed ctx path.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Path {
    pub(crate) segments: Vec<Segment>,
}

impl Path {
    /// The whole ctx, `$`.
    pub fn root() -> Path {
        Path::default()
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is `$`, the whole ctx.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// This path with one more key.
    pub fn key(mut self, key: &str) -> Path {
        self.segments.push(Segment::Key(key.into()));
        self
    }

    /// This path with one more array index.
    pub fn index(mut self, index: usize) -> Path {
        self.segments.push(Segment::Index(index));
        self
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.segments {
            match seg {
                Segment::Key(k) if is_plain_key(k) => write!(f, ".{k}")?,
                Segment::Key(k) => write!(f, "[\"{k}\"]")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A key prints in dot form (`.key`) unless it would not parse back that way (`["key"]`).
pub(crate) fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && !key.contains(['.', '[', ']', '"'])
}
