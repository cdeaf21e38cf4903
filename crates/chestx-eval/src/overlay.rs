//! Overlays: the radiograph, a class heatmap in a jet colour map, true boxes in green and detected
//! boxes in red.

use crate::boxes::Heatmap;
use chestx_core::BBox;
use chestx_image::Gray;
use image::{Rgb, RgbImage};
use std::path::Path;

fn jet(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let r = (1.5 - (4.0 * t - 3.0).abs()).clamp(0.0, 1.0);
    let g = (1.5 - (4.0 * t - 2.0).abs()).clamp(0.0, 1.0);
    let b = (1.5 - (4.0 * t - 1.0).abs()).clamp(0.0, 1.0);
    [r, g, b]
}

fn rect(img: &mut RgbImage, b: &BBox, color: Rgb<u8>, thickness: u32) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (b.x.round() as i64, b.y.round() as i64);
    let (x1, y1) = (
        (b.x + b.w).round() as i64 - 1,
        (b.y + b.h).round() as i64 - 1,
    );
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, color);
        }
    };
    for t in 0..thickness as i64 {
        for x in x0..=x1 {
            put(x, y0 + t);
            put(x, y1 - t);
        }
        for y in y0..=y1 {
            put(x0 + t, y);
            put(x1 - t, y);
        }
    }
}

/// Compose an overlay. `heat` (any size) is stretched over the image; `alpha` is its opacity at
/// full heat (weaker heat is more transparent).
pub fn render_overlay(
    image: &Gray,
    heat: Option<&Heatmap>,
    truth: &[BBox],
    detected: &[BBox],
    alpha: f32,
) -> RgbImage {
    let (w, h) = (image.width, image.height);
    let heat_px: Option<Vec<f32>> = heat.map(|hm| {
        let scaled: Vec<f32> = hm.to_u8().into_iter().map(|v| v as f32 / 255.0).collect();
        Gray::new(hm.width as u32, hm.height as u32, scaled)
            .resize(w, h)
            .data
    });
    let mut out = RgbImage::new(w, h);
    for (i, p) in out.pixels_mut().enumerate() {
        let g = image.data[i].clamp(0.0, 1.0);
        let mut c = [g, g, g];
        if let Some(hp) = &heat_px {
            let t = hp[i];
            let a = alpha * t;
            let j = jet(t);
            for k in 0..3 {
                c[k] = c[k] * (1.0 - a) + j[k] * a;
            }
        }
        *p = Rgb(c.map(|v| (v * 255.0).round() as u8));
    }
    let thick = (w / 256).max(1);
    for b in truth {
        rect(&mut out, b, Rgb([0, 220, 0]), thick);
    }
    for b in detected {
        rect(&mut out, b, Rgb([230, 0, 0]), thick);
    }
    out
}

pub fn save_overlay(img: &RgbImage, path: &Path) -> Result<(), String> {
    chestx_core::io::write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_drawn_on_their_pixels() {
        let img = Gray::new(64, 64, vec![0.5; 64 * 64]);
        let truth = BBox::new(10.0, 20.0, 8.0, 6.0);
        let det = BBox::new(40.0, 40.0, 5.0, 5.0);
        let o = render_overlay(&img, None, &[truth], &[det], 0.5);
        // Corners and edges of the true box are green; its inside and the background stay gray.
        for (x, y) in [(10, 20), (17, 20), (10, 25), (17, 25), (13, 20)] {
            assert_eq!(o.get_pixel(x, y), &Rgb([0, 220, 0]), "({x},{y})");
        }
        assert_eq!(o.get_pixel(13, 22), &Rgb([128, 128, 128]));
        assert_eq!(o.get_pixel(9, 20), &Rgb([128, 128, 128]));
        assert_eq!(o.get_pixel(18, 25), &Rgb([128, 128, 128]));
        assert_eq!(o.get_pixel(44, 44), &Rgb([230, 0, 0]));
    }

    #[test]
    fn heat_tints_only_where_hot() {
        let img = Gray::new(4, 4, vec![0.0; 16]);
        let mut data = vec![0.0; 16];
        data[0] = 1.0;
        let o = render_overlay(&img, Some(&Heatmap::new(4, 4, data)), &[], &[], 1.0);
        assert_ne!(o.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(o.get_pixel(3, 3), &Rgb([0, 0, 0]));
    }
}
