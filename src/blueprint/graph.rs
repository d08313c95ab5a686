use super::Blueprint;
pub enum GraphFormat {
    Mermaid,
    Dot,
}
pub fn render(bp: &Blueprint, _f: GraphFormat) -> String {
    bp.id.clone()
}
