//! Plane geometry of zones in normalized image coordinates (x right, y down).
//!
//! Rules on the boundary, so results are exact and stated:
//! * a point on a polygon's edge or vertex is **inside**;
//! * a point exactly on a line has **no side**: it neither starts nor ends a
//!   crossing (the track's next point off the line decides).

/// A point `[x, y]`.
pub type Pt = [f64; 2];

/// `cross(b - a, p - a)`: positive on one side of a→b, negative on the other, 0 on the line.
pub fn cross(a: Pt, b: Pt, p: Pt) -> f64 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// Which side of the line a→b `p` lies on: `Some(true)` where `cross > 0` (the right of a→b
/// as seen in the image, y pointing down), `Some(false)` on the left, `None` on the line.
pub fn side(a: Pt, b: Pt, p: Pt) -> Option<bool> {
    let c = cross(a, b, p);
    if c > 0.0 {
        Some(true)
    } else if c < 0.0 {
        Some(false)
    } else {
        None
    }
}

fn on_segment(a: Pt, b: Pt, p: Pt) -> bool {
    cross(a, b, p) == 0.0
        && p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

/// True when `p` is inside `polygon` or on its boundary (even-odd rule inside).
pub fn contains(polygon: &[Pt], p: Pt) -> bool {
    let n = polygon.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[(i + 1) % n]);
        if on_segment(a, b, p) {
            return true;
        }
        // Half-open in y: each edge owns its lower end, so a ray through a vertex counts once.
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// True when segments p1→p2 and a→b share a point (touching counts).
pub fn segments_intersect(p1: Pt, p2: Pt, a: Pt, b: Pt) -> bool {
    let d1 = cross(a, b, p1);
    let d2 = cross(a, b, p2);
    let d3 = cross(p1, p2, a);
    let d4 = cross(p1, p2, b);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0)) && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0)) {
        return true;
    }
    (d1 == 0.0 && on_segment(a, b, p1))
        || (d2 == 0.0 && on_segment(a, b, p2))
        || (d3 == 0.0 && on_segment(p1, p2, a))
        || (d4 == 0.0 && on_segment(p1, p2, b))
}

/// The point a zone tests for a box `[x, y, w, h]`: its bottom centre (where an object stands).
pub fn anchor(bbox: [f64; 4]) -> Pt {
    [bbox[0] + bbox[2] / 2.0, bbox[1] + bbox[3]]
}

/// Intersection over union of two boxes `[x, y, w, h]`.
pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [Pt; 4] = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]];

    #[test]
    fn containment_with_the_boundary_inside() {
        assert!(contains(&SQUARE, [0.4, 0.4]));
        assert!(!contains(&SQUARE, [0.7, 0.4]));
        assert!(contains(&SQUARE, [0.2, 0.4]), "on an edge");
        assert!(contains(&SQUARE, [0.6, 0.6]), "on a vertex");
        assert!(!contains(&SQUARE, [0.1, 0.2]), "on an edge's line, outside the edge");
        let triangle = [[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]];
        assert!(contains(&triangle, [0.5, 0.5]));
        assert!(!contains(&triangle, [0.9, 0.9]));
        assert!(!contains(&[[0.0, 0.0], [1.0, 1.0]], [0.5, 0.5]), "not a polygon");
    }

    #[test]
    fn a_ray_through_a_vertex_counts_once() {
        let diamond = [[0.5, 0.1], [0.9, 0.5], [0.5, 0.9], [0.1, 0.5]];
        assert!(contains(&diamond, [0.3, 0.5]));
        assert!(!contains(&diamond, [0.05, 0.5]));
        assert!(!contains(&diamond, [0.95, 0.5]));
    }

    #[test]
    fn sides_and_crossings() {
        let (a, b) = ([0.2, 0.5], [0.8, 0.5]);
        assert_eq!(side(a, b, [0.5, 0.7]), Some(true), "below a left-to-right line is its right");
        assert_eq!(side(a, b, [0.5, 0.3]), Some(false));
        assert_eq!(side(a, b, [0.5, 0.5]), None);
        assert!(segments_intersect([0.5, 0.3], [0.5, 0.7], a, b));
        assert!(!segments_intersect([0.9, 0.3], [0.9, 0.7], a, b), "passes beyond the end of the line");
        assert!(segments_intersect([0.8, 0.3], [0.8, 0.7], a, b), "through an end point");
        assert!(!segments_intersect([0.3, 0.3], [0.6, 0.4], a, b));
    }

    #[test]
    fn anchor_and_iou() {
        assert_eq!(anchor([0.1, 0.2, 0.2, 0.4]), [0.2, 0.6000000000000001]);
        assert_eq!(iou([0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]), 1.0);
        assert_eq!(iou([0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]), 0.0);
        assert!((iou([0.0, 0.0, 0.2, 0.2], [0.1, 0.0, 0.2, 0.2]) - 1.0 / 3.0).abs() < 1e-9);
    }
}
