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

    /// The same box in an image scaled by `sx`, `sy`.
    pub fn scaled(&self, sx: f64, sy: f64) -> BBox {
        BBox::new(self.x * sx, self.y * sy, self.w * sx, self.h * sy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
