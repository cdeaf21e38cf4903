//! Overlays on the real NIH originals that carry hand-drawn boxes: every box is drawn where
//! BBox_List_2017 puts it (checked pixel by pixel on its corners and edges), on the right image.

use chestx_data::NihDataset;
use chestx_eval::overlay::{render_overlay, save_overlay};
use chestx_image::Gray;
use image::Rgb;
use std::path::PathBuf;

#[test]
fn true_boxes_land_on_their_pixels_in_real_radiographs() {
    let Some(dir) = chestx_testkit::data("nih/images") else {
        return;
    };
    let dir = dir.parent().unwrap().to_path_buf();
    let ds = NihDataset::open(&dir).unwrap();
    let out = std::env::var_os("CHESTX_OVERLAY_OUT").map(PathBuf::from);
    let mut checked = 0;
    for b in &ds.boxes {
        let Some(path) = ds.image_path(&b.image) else {
            continue;
        };
        let img = Gray::open(&path).unwrap();
        assert_eq!((img.width, img.height), (1024, 1024), "{}", b.image);
        let o = render_overlay(&img, None, &[b.bbox], &[], 0.0);
        let green = Rgb([0, 220, 0]);
        let (x0, y0) = (b.bbox.x.round() as u32, b.bbox.y.round() as u32);
        let (x1, y1) = (
            (b.bbox.x + b.bbox.w).round() as u32 - 1,
            (b.bbox.y + b.bbox.h).round() as u32 - 1,
        );
        for (x, y) in [
            (x0, y0),
            (x1, y0),
            (x0, y1),
            (x1, y1),
            ((x0 + x1) / 2, y0),
            (x0, (y0 + y1) / 2),
        ] {
            assert_eq!(
                o.get_pixel(x, y),
                &green,
                "{} {}: ({x},{y})",
                b.image,
                b.finding
            );
        }
        // Inside the box (past the 4-pixel line) and outside it, the radiograph shows through: gray.
        for (x, y) in [
            ((x0 + x1) / 2, (y0 + y1) / 2),
            (x0.saturating_sub(6), y0.saturating_sub(6)),
        ] {
            let p = o.get_pixel(x, y);
            assert!(
                p[0] == p[1] && p[1] == p[2],
                "{} ({x},{y}) is {p:?}",
                b.image
            );
        }
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir).unwrap();
            save_overlay(
                &o,
                &dir.join(format!(
                    "{}_{}.png",
                    b.image.trim_end_matches(".png"),
                    b.finding.name()
                )),
            )
            .unwrap();
        }
        checked += 1;
    }
    assert_eq!(
        checked, 54,
        "all 54 boxes of the 45 shipped images with boxes"
    );
}
