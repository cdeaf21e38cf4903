/// An axis-aligned box in pixel coordinates of some image: `x`, `y` top-left, `w`, `h` size,
/// as in NIH's `BBox_List_2017.csv`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BBox {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl BBox {
    pub fn new(x: f64, y: f64, w: f64, h: f64) -> Self {
        BBox { x, y, w, h }
    }

    pub fn area(&self) -> f64 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Area of the overlap with `other` (0 when they do not overlap).
    pub fn intersection(&self, other: &BBox) -> f64 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        ix.max(0.0) * iy.max(0.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &BBox) -> f64 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// The paper's IoBB: intersection over the area of `self`, the *detected* box.
    pub fn iobb(&self, truth: &BBox) -> f64 {
        let a = self.area();
        if a <= 0.0 {
            0.0
        } else {
            self.intersection(truth) / a
        }
    }

    /// The part of the box inside a `width × height` image, or `None` when nothing of it is.
    pub fn clipped(&self, width: f64, height: f64) -> Option<BBox> {
        let (x0, y0) = (self.x.max(0.0), self.y.max(0.0));
        let (x1, y1) = ((self.x + self.w).min(width), (self.y + self.h).min(height));
        (x1 > x0 && y1 > y0).then(|| BBox::new(x0, y0, x1 - x0, y1 - y0))
    }

    /// The same box in an image scaled by `sx`, `sy`.
    pub fn scaled(&self, sx: f64, sy: f64) -> BBox {
        BBox::new(self.x * sx, self.y * sy, self.w * sx, self.h * sy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_the_part_inside_the_image() {
        let b = BBox::new(-5.0, 10.0, 20.0, 100.0)
            .clipped(64.0, 64.0)
            .unwrap();
        assert_eq!(b, BBox::new(0.0, 10.0, 15.0, 54.0));
        assert_eq!(BBox::new(70.0, 0.0, 5.0, 5.0).clipped(64.0, 64.0), None);
        let inside = BBox::new(1.0, 2.0, 3.0, 4.0);
        assert_eq!(inside.clipped(64.0, 64.0), Some(inside));
    }

    #[test]
    fn overlap_measures_worked_by_hand() {
        let truth = BBox::new(0.0, 0.0, 10.0, 10.0);
        // detected box: 5x5 fully inside the truth -> IoBB 1, IoU 25/100
        let inner = BBox::new(2.0, 2.0, 5.0, 5.0);
        assert_eq!(inner.iobb(&truth), 1.0);
        assert_eq!(inner.iou(&truth), 0.25);
        // half-overlapping 10x10 box shifted by 5 in x: inter 50, union 150
        let shifted = BBox::new(5.0, 0.0, 10.0, 10.0);
        assert!((shifted.iou(&truth) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(shifted.iobb(&truth), 0.5);
        // touching edges do not overlap
        let touching = BBox::new(10.0, 0.0, 5.0, 5.0);
        assert_eq!(touching.intersection(&truth), 0.0);
        assert_eq!(BBox::new(0.0, 0.0, 0.0, 0.0).iobb(&truth), 0.0);
    }
}
