//! The routing plan drawn as a graph: each step a box coloured by its status, in layers by its
//! `after` edges (steps that may run at once side by side), an arrow for each edge. Laid out
//! here and drawn by the request page's template as inline SVG.

use std::collections::HashMap;

use signoff_engine::StepState;

/// A box's size and the gaps between boxes, in SVG units.
const WIDTH: u32 = 180;
const HEIGHT: u32 = 52;
const GAP_X: u32 = 20;
const GAP_Y: u32 = 40;
const MARGIN: u32 = 6;
/// The longest label a box holds before it is cut short.
const LABEL: usize = 22;

/// One step's box.
pub(super) struct Node {
    pub id: String,
    pub label: String,
    /// The full label, for the box's tooltip and its link's accessible name.
    pub title: String,
    pub status: &'static str,
    pub x: u32,
    pub y: u32,
}

/// One `after` edge, from below its earlier step to above its later one, as an SVG path.
pub(super) struct Edge {
    pub path: String,
    /// Into a skipped step: drawn dashed.
    pub skipped: bool,
}

/// The laid-out plan.
pub(super) struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: u32,
    pub height: u32,
    pub box_width: u32,
    pub box_height: u32,
}

impl Graph {
    pub(super) fn of(steps: &[StepState]) -> Graph {
        // A step's layer is one below the deepest step it comes after (plans list a step after
        // the steps it follows, so one pass in plan order suffices).
        let mut layer: HashMap<&str, usize> = HashMap::new();
        for s in steps {
            let depth = s.after.iter().filter_map(|a| layer.get(a.as_str())).map(|d| d + 1).max().unwrap_or(0);
            layer.insert(&s.id, depth);
        }
        let layers = steps.iter().map(|s| layer[s.id.as_str()]).max().map_or(0, |d| d + 1);
        let mut rows: Vec<Vec<&StepState>> = vec![Vec::new(); layers];
        for s in steps {
            rows[layer[s.id.as_str()]].push(s);
        }
        let widest = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let span = |n: u32| n * WIDTH + n.saturating_sub(1) * GAP_X;
        let width = span(widest) + 2 * MARGIN;
        let height = layers as u32 * HEIGHT + (layers as u32).saturating_sub(1) * GAP_Y + 2 * MARGIN;
        let mut nodes = Vec::with_capacity(steps.len());
        let mut at: HashMap<&str, (u32, u32)> = HashMap::new();
        for (depth, row) in rows.iter().enumerate() {
            let left = MARGIN + (span(widest) - span(row.len() as u32)) / 2;
            for (i, s) in row.iter().enumerate() {
                let (x, y) = (left + i as u32 * (WIDTH + GAP_X), MARGIN + depth as u32 * (HEIGHT + GAP_Y));
                at.insert(&s.id, (x, y));
                let title = s.title.clone().unwrap_or_else(|| s.id.clone());
                let label = if title.chars().count() > LABEL { format!("{}…", title.chars().take(LABEL - 1).collect::<String>()) } else { title.clone() };
                nodes.push(Node { id: s.id.clone(), label, title, status: s.status.as_str(), x, y });
            }
        }
        let mut edges = Vec::new();
        for s in steps {
            let (x2, y2) = at[s.id.as_str()];
            for a in &s.after {
                let Some(&(x1, y1)) = at.get(a.as_str()) else { continue };
                let (x1, y1, x2, y2) = (x1 + WIDTH / 2, y1 + HEIGHT, x2 + WIDTH / 2, y2);
                let bend = GAP_Y / 2;
                edges.push(Edge {
                    path: format!("M{x1} {y1} C{x1} {} {x2} {} {x2} {}", y1 + bend, y2.saturating_sub(bend), y2.saturating_sub(4)),
                    skipped: s.status.as_str() == "skipped",
                });
            }
        }
        Graph { nodes, edges, width, height, box_width: WIDTH, box_height: HEIGHT }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(id: &str, after: &[&str]) -> StepState {
        serde_json::from_value(json!({
            "id": id, "status": "waiting", "after": after, "approvers": [], "quorum": 1, "rejections_needed": 1,
            "require_acks": [], "approvals": [], "rejections": [], "acks": [], "on_timeout": "expire", "escalation_level": 0
        }))
        .unwrap()
    }

    #[test]
    fn parallel_steps_share_a_layer_and_a_join_sits_below_both() {
        let g = Graph::of(&[step("manager", &[]), step("finance", &[]), step("legal", &["manager", "finance"])]);
        let pos: HashMap<&str, (u32, u32)> = g.nodes.iter().map(|n| (n.id.as_str(), (n.x, n.y))).collect();
        assert_eq!(pos["manager"].1, pos["finance"].1, "side by side");
        assert!(pos["manager"].0 < pos["finance"].0);
        assert!(pos["legal"].1 > pos["manager"].1, "below what it follows");
        assert_eq!(g.edges.len(), 2);
        assert_eq!(g.width, 2 * WIDTH + GAP_X + 2 * MARGIN);
    }
}
