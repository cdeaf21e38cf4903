//! Where a convolutional network's output cells sit on its input image.
//!
//! A plain image resize assumes cell `i` of an `S`-cell map covers input pixels `[i·s, (i+1)·s)` and
//! so is centred at `(i + ½)·s`. Real backbones are not built that way: in a torchvision ResNet every
//! downsampling layer is padded so that output `j` is centred on input pixel `2j`, and cell `i` of the
//! final map is centred on pixel `32i` — half a cell (16 px) up and left of where a resize puts it.
//! Boxes drawn from a heatmap stretched without this correction are shifted by that much, which is
//! the whole size of a small nodule. So heatmaps are resampled through a [`CellGrid`] worked out from
//! each backbone's layers.

/// Cell `i` of the map is centred at input coordinate `origin + i·stride`, in continuous pixel
/// coordinates (pixel `p` spans `[p, p+1)`, its centre is `p + ½`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CellGrid {
    pub stride: f64,
    pub origin: f64,
}

/// One downsampling layer: a convolution or pooling window. Layers that keep the size (stride 1,
/// "same" padding) keep cell centres and need not be listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
}

impl Window {
    pub const fn new(kernel: i64, stride: i64, padding: i64) -> Self {
        Window {
            kernel,
            stride,
            padding,
        }
    }
}

impl CellGrid {
    /// The grid a plain resize assumes: cells tile the input edge to edge.
    pub fn tiled(stride: f64) -> CellGrid {
        CellGrid {
            stride,
            origin: stride / 2.0,
        }
    }

    /// The grid after `layers`, input side first. Output `j` of a window `(k, s, p)` is centred on
    /// its input index `s·j − p + (k−1)/2`; composing these gives an affine map `a·i + b` from cell
    /// index to input pixel index, whose centre is `b + ½`.
    pub fn of_layers(layers: &[Window]) -> CellGrid {
        let (mut a, mut b) = (1.0f64, 0.0f64);
        for w in layers {
            let d = -(w.padding as f64) + (w.kernel - 1) as f64 / 2.0;
            b += a * d;
            a *= w.stride as f64;
        }
        CellGrid {
            stride: a,
            origin: b + 0.5,
        }
    }

    /// The grid of a map computed on the mirrored input (`side` wide, `cells` cells) and flipped back:
    /// its cell `i` is the mirrored image's cell `cells − 1 − i`.
    pub fn mirrored(&self, side: f64, cells: usize) -> CellGrid {
        CellGrid {
            stride: self.stride,
            origin: side - self.origin - (cells - 1) as f64 * self.stride,
        }
    }

    /// Centre of cell `i` in input coordinates.
    pub fn centre(&self, i: usize) -> f64 {
        self.origin + i as f64 * self.stride
    }

    /// The (fractional) cell index whose centre is at input coordinate `x`.
    pub fn cell_at(&self, x: f64) -> f64 {
        (x - self.origin) / self.stride
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet_cells_sit_on_multiples_of_the_stride() {
        // conv1 7×7/2 pad 3, maxpool 3×3/2 pad 1, three 3×3/2 pad 1 stages.
        let g = CellGrid::of_layers(&[
            Window::new(7, 2, 3),
            Window::new(3, 2, 1),
            Window::new(3, 2, 1),
            Window::new(3, 2, 1),
            Window::new(3, 2, 1),
        ]);
        assert_eq!(g.stride, 32.0);
        assert_eq!(g.centre(0), 0.5);
        assert_eq!(g.centre(3), 96.5);
        // A resize would put cell 3 at 112: 15.5 px away.
        assert_eq!(CellGrid::tiled(32.0).centre(3), 112.0);
        // On a 256 px input (8 cells), mirrored cell 0 is the original cell 7 at 224.5, seen from the
        // other side: 256 − 224.5 = 31.5.
        assert_eq!(g.mirrored(256.0, 8).centre(0), 31.5);
    }

    #[test]
    fn unpadded_pairs_tile_the_input() {
        // Five 2×2/2 poolings (VGG): exactly the tiled grid.
        let g = CellGrid::of_layers(&[Window::new(2, 2, 0); 5]);
        assert_eq!(g, CellGrid::tiled(32.0));
        assert_eq!(g.cell_at(g.centre(7)), 7.0);
        // Tiled cells mirror onto themselves; ResNet's move by a stride less one pixel.
        assert_eq!(g.mirrored(256.0, 8), g);
    }

    #[test]
    fn unpadded_odd_windows_shift_forward() {
        // AlexNet: conv 11/4 pad 2, then three 3×3/2 unpadded max-pools.
        let g = CellGrid::of_layers(&[
            Window::new(11, 4, 2),
            Window::new(3, 2, 0),
            Window::new(3, 2, 0),
            Window::new(3, 2, 0),
        ]);
        assert_eq!((g.stride, g.origin), (32.0, 31.5));
    }
}
